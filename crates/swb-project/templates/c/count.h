/* What the function computes, apart from its input and output: testable natively. */

#include <stddef.h>

struct counts {
    size_t bytes, words, lines;
};

/* Counts like wc: bytes, words (runs of non-space), lines (newlines). */
static struct counts count(const char *text, size_t len) {
    struct counts c = {len, 0, 0};
    int in_word = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        int space = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
        if (ch == '\n') c.lines++;
        if (!space && !in_word) c.words++;
        in_word = !space;
    }
    return c;
}

/* Decodes the JSON string at the start of `json` (after blanks) into `out`;
 * returns its length, or -1 if it is not one. \uXXXX escapes of ASCII are kept,
 * others become '?'. */
static long json_string(const char *json, char *out, size_t cap) {
    const char *p = json;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (*p++ != '"') return -1;
    size_t n = 0;
    while (*p && *p != '"') {
        if (n + 1 >= cap) return -1;
        char ch = *p++;
        if (ch == '\\') {
            char e = *p++;
            switch (e) {
                case 'n': ch = '\n'; break;
                case 't': ch = '\t'; break;
                case 'r': ch = '\r'; break;
                case 'b': ch = '\b'; break;
                case 'f': ch = '\f'; break;
                case '"': case '\\': case '/': ch = e; break;
                case 'u': {
                    unsigned v = 0;
                    for (int i = 0; i < 4; i++) {
                        char h = *p++;
                        v <<= 4;
                        if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
                        else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
                        else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
                        else return -1;
                    }
                    ch = v < 128 ? (char)v : '?';
                    break;
                }
                default: return -1;
            }
        }
        out[n++] = ch;
    }
    if (*p != '"') return -1;
    out[n] = '\0';
    return (long)n;
}

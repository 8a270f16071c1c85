/* {{function}}: a hosted function in C, compiled to a WASI module.
 *
 * The input is a JSON string on stdin (the platform has checked it against
 * input.schema.json); the output is a JSON object on stdout (checked against
 * output.schema.json); what goes to stderr is kept as the call's log. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count.h"

int main(void) {
    static char input[1 << 20];
    size_t n = fread(input, 1, sizeof input - 1, stdin);
    input[n] = '\0';
    static char text[1 << 20];
    long len = json_string(input, text, sizeof text);
    if (len < 0) {
        fprintf(stderr, "the input is not a JSON string\n");
        return 2;
    }
    struct counts c = count(text, (size_t)len);
    fprintf(stderr, "counted %zu bytes\n", c.bytes);
    printf("{\"bytes\":%zu,\"words\":%zu,\"lines\":%zu}\n", c.bytes, c.words, c.lines);
    return 0;
}

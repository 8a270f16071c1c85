/* The function's own test, run natively: `./test.sh`. */

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "count.h"

int main(void) {
    char text[256];
    long len = json_string(" \"one two\\nthree \\u0041\" ", text, sizeof text);
    assert(len == 15 && strcmp(text, "one two\nthree A") == 0);
    struct counts c = count(text, (size_t)len);
    assert(c.bytes == 15 && c.words == 4 && c.lines == 1);
    assert(json_string("{\"not\": \"a string\"}", text, sizeof text) == -1);
    assert(json_string("\"unterminated", text, sizeof text) == -1);
    puts("ok");
    return 0;
}

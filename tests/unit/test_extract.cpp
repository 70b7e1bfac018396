// extract_code_blocks: every fence form a model writes, and messages without code.
#include <doctest/doctest.h>

#include "kernex/executor.hpp"

using kernex::code_block;
using kernex::extract_code_blocks;

namespace {

std::vector<std::pair<std::string, std::string>> pairs(const std::vector<code_block>& blocks) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& b : blocks) out.emplace_back(b.language, b.code);
    return out;
}

using expected = std::vector<std::pair<std::string, std::string>>;

}  // namespace

TEST_CASE("backtick and tilde fences, with the text around them ignored") {
    const auto blocks = extract_code_blocks(
        "Let me check.\n"
        "```python\nprint(1)\n```\n"
        "Then:\n"
        "~~~bash\necho hi\nls\n~~~\n"
        "Done.");
    CHECK(pairs(blocks) == expected{{"python", "print(1)\n"}, {"bash", "echo hi\nls\n"}});
}

TEST_CASE("messages with no code give no blocks") {
    CHECK(extract_code_blocks("").empty());
    CHECK(extract_code_blocks("Just text.\nNo code here, only `inline` code.").empty());
    CHECK(extract_code_blocks("``not a fence``\n``\nx\n``").empty());
    CHECK(extract_code_blocks("Use ```print(1)``` inline.").empty());  // a backtick in the info string
}

TEST_CASE("the language is the first word of the info string, lower-cased") {
    CHECK(pairs(extract_code_blocks("```Python title=\"x.py\"\nx\n```")) == expected{{"python", "x\n"}});
    CHECK(pairs(extract_code_blocks("```  sh  \nx\n```")) == expected{{"sh", "x\n"}});
    CHECK(pairs(extract_code_blocks("```c++\nint x;\n```")) == expected{{"c++", "int x;\n"}});
    CHECK(pairs(extract_code_blocks("~~~ js {linenos} `x`\nx\n~~~")) == expected{{"js", "x\n"}});
    for (const char* lang : {"py", "shell", "bash", "javascript"})
        CHECK(extract_code_blocks(std::string("```") + lang + "\nx\n```")[0].language == lang);
}

TEST_CASE("longer fences hold shorter ones; a close is the same character and at least as long") {
    const auto blocks = extract_code_blocks(
        "````markdown\n```python\nprint(1)\n```\n````\n"
        "~~~~\n~~~\n```\n~~~~~\n");
    CHECK(pairs(blocks) == expected{{"markdown", "```python\nprint(1)\n```\n"}, {"python", "~~~\n```\n"}});
    CHECK(pairs(extract_code_blocks("```\nx\n~~~\n```")) == expected{{"python", "x\n~~~\n"}});
    // A line with text after the fence does not close it.
    CHECK(pairs(extract_code_blocks("```sh\necho\n``` not a close\n```  \t")) ==
          expected{{"sh", "echo\n``` not a close\n"}});
}

TEST_CASE("CRLF line ends") {
    const auto blocks = extract_code_blocks("Run:\r\n```bash\r\necho a\r\necho b\r\n```\r\nok\r\n");
    CHECK(pairs(blocks) == expected{{"bash", "echo a\necho b\n"}});
}

TEST_CASE("indented fences (up to three spaces) lose that indentation from their lines") {
    const auto blocks = extract_code_blocks(
        "1. Install:\n"
        "  ```bash\n"
        "  pip install x\n"
        "      nested\n"
        " less\n"
        "    ```\n"  // four spaces: not a close
        "   ```\n");
    CHECK(pairs(blocks) == expected{{"bash", "pip install x\n    nested\nless\n  ```\n"}});
    // Four spaces is an indented code block in CommonMark, not a fence.
    CHECK(extract_code_blocks("    ```python\n    x\n    ```\n").empty());
}

TEST_CASE("a fence never closed is ignored; blocks before it are kept") {
    CHECK(extract_code_blocks("```python\nimport os\nos.remove(").empty());
    CHECK(pairs(extract_code_blocks("```sh\nls\n```\ntext\n```bash\nrm -rf /tmp/x")) == expected{{"sh", "ls\n"}});
}

TEST_CASE("a block without a language: shebang, else the default") {
    CHECK(extract_code_blocks("```\n#!/bin/bash\necho\n```")[0].language == "bash");
    CHECK(extract_code_blocks("```\n#!/usr/bin/env python3\nprint()\n```")[0].language == "python");
    CHECK(extract_code_blocks("```\n#!/usr/bin/env -S python3.11 -u\nprint()\n```")[0].language == "python");
    CHECK(extract_code_blocks("```\n#! /bin/sh -e\nls\n```")[0].language == "sh");
    CHECK(extract_code_blocks("```\n#!/usr/bin/env node\n1\n```")[0].language == "javascript");
    CHECK(extract_code_blocks("```\n#!/usr/bin/ruby\n1\n```")[0].language == "ruby");
    CHECK(extract_code_blocks("```\nprint(1)\n```")[0].language == "python");
    CHECK(extract_code_blocks("```\nls\n```", "Bash")[0].language == "bash");
    CHECK(extract_code_blocks("~~~\n# not a shebang\n~~~", "sh")[0].language == "sh");
}

TEST_CASE("empty blocks are kept, the last line needs no line end, order is kept") {
    CHECK(pairs(extract_code_blocks("```sh\n```")) == expected{{"sh", ""}});
    CHECK(pairs(extract_code_blocks("```sh\n\n```")) == expected{{"sh", "\n"}});
    const auto blocks = extract_code_blocks("```a\n1\n```\n```b\n2\n```\n```c\n3\n```");
    REQUIRE(blocks.size() == 3);
    CHECK(blocks[0].language == "a");
    CHECK(blocks[1].language == "b");
    CHECK(blocks[2].code == "3\n");
}

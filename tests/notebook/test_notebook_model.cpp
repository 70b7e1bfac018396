// The notebook model without a kernel: parsing and its checks, nbformat's
// layout on write, parameters in each language, percent scripts.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "kernex/error.hpp"
#include "kernex/kernelspec.hpp"
#include "kernex/notebook.hpp"

using kernex::json;
using kernex::notebook;

namespace {
const char* minimal = R"NB({"cells": [{"cell_type": "code", "execution_count": null, "id": "a1",
  "metadata": {"tags": ["x"]}, "outputs": [{"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]}],
  "source": ["print(1)\n", "print(2)"]}], "metadata": {"custom": 1}, "nbformat": 4, "nbformat_minor": 5})NB";
}

TEST_CASE("parse joins split lines and keeps everything else") {
    auto nb = notebook::parse(minimal);
    CHECK(nb.cells()[0]["source"] == "print(1)\nprint(2)");
    CHECK(nb.cells()[0]["outputs"][0]["text"] == "a\nb");
    CHECK(nb.doc()["metadata"]["custom"] == 1);
    CHECK(nb.nbformat_minor() == 5);
}

TEST_CASE("parse refuses what is not nbformat 4, saying where") {
    auto refuses = [](const std::string& text, const std::string& needle) {
        try {
            notebook::parse(text, "t.ipynb");
            FAIL("accepted: " << text);
        } catch (const kernex::error& e) {
            CHECK(e.code() == kernex::errc::invalid_argument);
            CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
        }
    };
    refuses("{", "not JSON");
    refuses(R"NB({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "cells": []})NB", "nbformat is not 4");
    refuses(R"NB({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "source": "",
        "metadata": {}, "outputs": [], "execution_count": null}]})NB", "cell 0 has no valid id");
    refuses(R"NB({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [{"cell_type": "other", "source": "",
        "metadata": {}}]})NB", "unknown cell_type");
    refuses(R"NB({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [{"cell_type": "code", "source": [1],
        "metadata": {}, "outputs": [], "execution_count": null}]})NB", "cell 0.source");
    refuses(R"NB({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [{"cell_type": "code", "source": "",
        "metadata": {}, "outputs": [{"output_type": "bogus"}], "execution_count": null}]})NB", "outputs[0]");
}

TEST_CASE("dump is nbformat's layout: sorted keys, indent 1, lines split as Python's splitlines") {
    auto nb = notebook::parse(minimal);
    nb.cells()[0]["outputs"][0]["text"] = "a\r\nb\rc\x0b" "d\xe2\x80\xa8" "e";
    auto text = nb.dump();
    CHECK(text.rfind("{\n \"cells\": [\n  {\n   \"cell_type\": \"code\",", 0) == 0);
    CHECK(text.back() == '\n');
    auto j = json::parse(text);
    CHECK(j["cells"][0]["source"] == json::array({"print(1)\n", "print(2)"}));
    CHECK(j["cells"][0]["outputs"][0]["text"] == json::array({"a\r\n", "b\r", "c\x0b", "d\xe2\x80\xa8", "e"}));
    CHECK(notebook::parse(text).cells()[0]["outputs"][0]["text"] == nb.cells()[0]["outputs"][0]["text"]);
}

TEST_CASE("parameters in python, R, julia and bash; other languages are an error naming them") {
    json p = {{"n", 2}, {"s", "a\"b'$x\n"}, {"f", false}, {"z", nullptr}, {"l", {1, "x"}}};
    CHECK(kernex::parameters_source(p, "python") ==
          "# Parameters\nf = False\nl = [1, \"x\"]\nn = 2\ns = \"a\\\"b'$x\\n\"\nz = None\n");
    CHECK(kernex::parameters_source(p, "R") ==
          "# Parameters\nf = FALSE\nl = list(1, \"x\")\nn = 2\ns = \"a\\\"b'$x\\n\"\nz = NULL\n");
    CHECK(kernex::parameters_source(p, "julia") ==
          "# Parameters\nf = false\nl = [1, \"x\"]\nn = 2\ns = \"a\\\"b'\\$x\\n\"\nz = nothing\n");
    CHECK(kernex::parameters_source(p, "bash") ==
          "# Parameters\nf=false\nl=(1 'x')\nn=2\ns='a\"b'\\''$x\n'\nz=''\n");
    CHECK(kernex::parameters_source({{"d", {{"k", 1}}}}, "python") == "# Parameters\nd = {\"k\": 1}\n");
    CHECK(kernex::parameters_source({{"d", {{"k", 1}}}}, "julia") == "# Parameters\nd = Dict(\"k\" => 1)\n");
    CHECK(kernex::parameters_source({{"d", {{"k", 1}}}}, "r") == "# Parameters\nd = list(\"k\" = 1)\n");
    CHECK_THROWS_WITH_AS(kernex::parameters_source(p, "scala"), doctest::Contains("'scala'"), kernex::error);
    CHECK_THROWS_AS(kernex::parameters_source({{"d", {{"k", 1}}}}, "bash"), kernex::error);
    CHECK_THROWS_AS(kernex::parameters_source({{"a b", 1}}, "python"), kernex::error);
    CHECK_THROWS_AS(kernex::parameters_source({{"x=1;import os;y", 1}}, "python"), kernex::error);
}

TEST_CASE("injected-parameters goes after the parameters cell, else first, and replaces an earlier one") {
    auto nb = notebook::parse(R"NB({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
        {"cell_type": "markdown", "source": "m", "metadata": {}},
        {"cell_type": "code", "source": "a = 1", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": null},
        {"cell_type": "code", "source": "a", "metadata": {}, "outputs": [], "execution_count": null}]})NB");
    kernex::inject_parameters(nb, {{"a", 2}}, "python");
    REQUIRE(nb.cells().size() == 4);
    CHECK(nb.cells()[2]["source"] == "# Parameters\na = 2\n");
    CHECK(nb.cells()[2]["metadata"]["tags"] == json::array({"injected-parameters"}));
    CHECK_FALSE(nb.cells()[2].contains("id"));  // 4.4: no ids
    kernex::inject_parameters(nb, {{"a", 3}}, "python");
    REQUIRE(nb.cells().size() == 4);
    CHECK(nb.cells()[2]["source"] == "# Parameters\na = 3\n");

    notebook fresh;  // 4.5: no parameters cell -> first, with an id
    fresh.cells().push_back(fresh.new_cell("code", "x"));
    kernex::inject_parameters(fresh, {{"a", 1}}, "python");
    CHECK(fresh.cells()[0]["metadata"]["tags"] == json::array({"injected-parameters"}));
    CHECK(fresh.cells()[0]["id"].get<std::string>().size() == 16);
}

TEST_CASE("percent scripts: code and markdown cells") {
    kernex::kernelspec spec;
    spec.name = "python3";
    spec.display_name = "Python 3";
    spec.language = "python";
    auto nb = kernex::notebook_from_percent_script("import os\n\n# %% [markdown]\n# # T\n#\n# text\n# %%\n\nx = 1\n\n# %% [md]\n# y\n",
                                                   spec);
    REQUIRE(nb.cells().size() == 4);
    CHECK(nb.cells()[0]["source"] == "import os");
    CHECK(nb.cells()[1]["cell_type"] == "markdown");
    CHECK(nb.cells()[1]["source"] == "# T\n\ntext");
    CHECK(nb.cells()[2]["source"] == "x = 1");
    CHECK(nb.cells()[3]["source"] == "y");
    CHECK(nb.doc()["metadata"]["kernelspec"]["name"] == "python3");
}

TEST_CASE("write replaces a symlink at the destination instead of writing through it") {
    auto dir = std::filesystem::temp_directory_path() / ("kernex-nb-" + kernex::new_id().substr(0, 8));
    std::filesystem::create_directory(dir);
    {
        std::ofstream(dir / "victim") << "precious";
    }
    std::filesystem::create_symlink(dir / "victim", dir / "out.ipynb");
    notebook nb;
    nb.write(dir / "out.ipynb");
    CHECK_FALSE(std::filesystem::is_symlink(dir / "out.ipynb"));
    std::ifstream victim(dir / "victim");
    std::string text((std::istreambuf_iterator<char>(victim)), {});
    CHECK(text == "precious");
    CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 2);  // no temporary left
    CHECK_THROWS_AS(nb.write(dir), kernex::error);
    std::filesystem::remove_all(dir);
}

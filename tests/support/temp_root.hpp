#pragma once
// One temporary directory per test process, created on first use and removed at exit.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace astrid::test {

/// <tmp>/astrid_<name>_test_<pid>; the first call's `name` wins for the process.
inline const std::filesystem::path& tempRoot(const std::string& name) {
    struct Root {
        std::filesystem::path path;
        explicit Root(const std::string& n)
            : path(std::filesystem::temp_directory_path() / ("astrid_" + n + "_test_" + std::to_string(::getpid()))) {
            std::filesystem::create_directories(path);
        }
        ~Root() {
            std::error_code ec;
            std::filesystem::remove_all(path, ec);
        }
    };
    static const Root root(name);
    return root.path;
}

}  // namespace astrid::test

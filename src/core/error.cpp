#include "astrid/core/error.hpp"

#include <utility>

namespace astrid {
namespace {
std::string withFile(const std::string& message, const std::string& file, const std::string& where) {
    if (file.empty()) return message;
    return file + where + ": " + message;
}
}  // namespace

FitsError::FitsError(const std::string& message, std::string file, int hdu)
    : Error(withFile(message, file, hdu >= 0 ? " [HDU " + std::to_string(hdu) + "]" : std::string{})),
      file_(std::move(file)),
      hdu_(hdu) {}

CatalogError::CatalogError(const std::string& message, std::string file, long line)
    : Error(withFile(message, file, line > 0 ? ":" + std::to_string(line) : std::string{})),
      file_(std::move(file)),
      line_(line) {}

ConfigError::ConfigError(const std::string& message, std::string key)
    : Error(key.empty() ? message : "config key '" + key + "': " + message), key_(std::move(key)) {}

}  // namespace astrid

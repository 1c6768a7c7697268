#pragma once
// The one exception hierarchy of astrid. Every error carries the context a user needs to find the
// problem (file, HDU, key, line); what() already contains that context in readable form.
#include <stdexcept>
#include <string>

namespace astrid {

/// Root of every exception astrid throws on purpose.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A FITS file could not be read or written. file() and hdu() name where ("" / -1 when unknown).
class FitsError : public Error {
public:
    FitsError(const std::string& message, std::string file, int hdu = -1);
    const std::string& file() const noexcept { return file_; }
    /// 0-based HDU index (the primary HDU is 0), or -1 when not tied to one HDU.
    int hdu() const noexcept { return hdu_; }

private:
    std::string file_;
    int hdu_;
};

/// A world coordinate system could not be parsed or a transform failed.
class WcsError : public Error {
public:
    using Error::Error;
};

/// A target or source catalog could not be parsed. line() is 1-based, 0 when not tied to a line.
class CatalogError : public Error {
public:
    CatalogError(const std::string& message, std::string file, long line = 0);
    const std::string& file() const noexcept { return file_; }
    long line() const noexcept { return line_; }

private:
    std::string file_;
    long line_;
};

/// A job file or command-line option is wrong. key() names the offending key.
class ConfigError : public Error {
public:
    ConfigError(const std::string& message, std::string key = {});
    const std::string& key() const noexcept { return key_; }

private:
    std::string key_;
};

/// An HDF5 call failed.
class H5Error : public Error {
public:
    using Error::Error;
};

/// Input data are present but unusable (NaN image, out-of-range header value, no overlap...).
class DataError : public Error {
public:
    using Error::Error;
};

/// A file-system or operating-system operation failed.
class IoError : public Error {
public:
    using Error::Error;
};

/// An MPI call failed (thrown only from the runner).
class MpiError : public Error {
public:
    using Error::Error;
};

}  // namespace astrid

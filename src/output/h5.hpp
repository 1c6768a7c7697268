#pragma once
// Private to output/ and runner/: RAII owners for hid_t and the one place HDF5 status codes become
// H5Error. Never included from a public header.
#include <hdf5.h>

#include <string>
#include <utility>

#include "astrid/core/error.hpp"

namespace astrid::output::h5 {

static_assert(sizeof(hid_t) == sizeof(std::int64_t), "hid_t travels as int64_t through public headers");

/// The HDF5 error stack as one line ("H5Dwrite(): can't write data; ...").
std::string errorStack();
/// Turns automatic HDF5 error printing off for this process (we report errors ourselves).
void silenceAutomaticErrorPrinting();

[[noreturn]] void fail(const std::string& what);
/// Returns `v` (an hid_t or herr_t) unless it is negative, HDF5's failure signal.
template <class T>
T check(T v, const std::string& what) {
    if (v < 0) fail(what);
    return v;
}

/// Move-only owner of an hid_t, closed with the right H5?close; never throws on close.
class Handle {
public:
    Handle() = default;
    explicit Handle(hid_t id) : id_(id) {}
    Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
    Handle& operator=(Handle&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = std::exchange(o.id_, H5I_INVALID_HID);
        }
        return *this;
    }
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() { reset(); }
    hid_t get() const noexcept { return id_; }
    explicit operator bool() const noexcept { return id_ >= 0; }
    /// Closes now; returns false (and logs) when HDF5 reports a failure. Never throws.
    bool reset() noexcept;
    /// Closes now and throws H5Error on failure (file close: the place a full disk shows up).
    void close(const std::string& what);

private:
    hid_t id_ = H5I_INVALID_HID;
};

}  // namespace astrid::output::h5

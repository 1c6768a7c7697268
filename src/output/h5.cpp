#include "h5.hpp"

#include "astrid/core/log.hpp"

namespace astrid::output::h5 {
namespace {
herr_t collect(unsigned n, const H5E_error2_t* err, void* data) {
    auto* out = static_cast<std::string*>(data);
    if (n > 0) *out += "; ";
    *out += std::string(err->func_name ? err->func_name : "?") + "(): " + (err->desc ? err->desc : "");
    return 0;
}
}  // namespace

std::string errorStack() {
    std::string out;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &out);
    H5Eclear2(H5E_DEFAULT);
    return out.empty() ? "no HDF5 error detail" : out;
}

void silenceAutomaticErrorPrinting() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

void fail(const std::string& what) { throw H5Error(what + ": " + errorStack()); }

namespace {
herr_t closeId(hid_t id) noexcept {
    herr_t status = 0;
    switch (H5Iget_type(id)) {
        case H5I_FILE: status = H5Fclose(id); break;
        case H5I_GROUP: status = H5Gclose(id); break;
        case H5I_DATASET: status = H5Dclose(id); break;
        case H5I_DATASPACE: status = H5Sclose(id); break;
        case H5I_DATATYPE: status = H5Tclose(id); break;
        case H5I_ATTR: status = H5Aclose(id); break;
        case H5I_GENPROP_LST: status = H5Pclose(id); break;
        default: status = H5Idec_ref(id); break;
    }
    return status;
}
}  // namespace

bool Handle::reset() noexcept {
    if (id_ < 0) return true;
    const herr_t status = closeId(std::exchange(id_, H5I_INVALID_HID));
    if (status < 0) {
        log::get("astrid.output")->warn("closing an HDF5 object failed: {}", errorStack());
        return false;
    }
    return true;
}

void Handle::close(const std::string& what) {
    if (id_ < 0) return;
    if (closeId(std::exchange(id_, H5I_INVALID_HID)) < 0) fail(what);
}

}  // namespace astrid::output::h5

// libFuzzer harness: any bytes as a catalog (SAI or CSV, auto-detected). The parser must never
// crash, and every data row must be accounted for (kept, rejected or excluded).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "astrid/catalog/catalog.hpp"
#include "astrid/core/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    for (auto format : {astrid::catalog::CatalogFormat::Auto, astrid::catalog::CatalogFormat::Csv}) {
        std::istringstream in(text);
        astrid::catalog::CatalogFilter filter;
        filter.minYear = 2000;
        filter.limit = 5;
        try {
            const auto r = astrid::catalog::parseCatalog(in, "fuzz.txt", format, filter);
            if (r.dataRows != r.targets.size() + r.rejected.size() + r.excluded.size()) std::abort();
            for (const auto& t : r.targets)
                if (!(t.raDeg >= 0.0 && t.raDeg < 360.0 && t.decDeg >= -90.0 && t.decDeg <= 90.0)) std::abort();
        } catch (const astrid::Error&) {
            // A whole-file error (no header) is a valid answer.
        }
    }
    return 0;
}

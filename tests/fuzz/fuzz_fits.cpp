// libFuzzer harness: any bytes as a FITS file. Reading the image and its planes, the header's
// typed values, the observation metadata and the WCS must end in data or an astrid::Error, never
// a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "astrid/archive/archive.hpp"
#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/wcs/sky_wcs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::string path = "/tmp/astrid_fuzz_" + std::to_string(::getpid()) + ".fits";
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
    try {
        auto planes = astrid::fits::readImagePlanes(path);
        const auto& h = planes.science.header;
        for (const auto& card : h.cards()) {
            try {
                (void)h.getDouble(card.key);
            } catch (const astrid::Error&) {
            }
        }
        auto obs = astrid::archive::observationFromHeader(h, planes.science.image.width(),
                                                           planes.science.image.height());
        (void)obs;
        auto w = astrid::wcs::SkyWcs::fromHeader(h);
        (void)w.pixelToSky(0.0, 0.0);
    } catch (const astrid::Error&) {
    }
    return 0;
}

// Resamples a reference FITS image onto a science image's pixel grid through the two WCSs alone
// (registration::PixelMap::fromWcs + registration::resample, Lanczos3, flux conserved), the way
// SWarp does it, and writes the result with the science WCS. For bench/swarp_compare.sh; prints the
// seconds of each step on one line:
//   read <s> map <s> resample <s> write <s>
//   build/bench/resample_fits REF.fits SCI.fits OUT.fits [repeats]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/registration/resample.hpp"
#include "astrid/wcs/sky_wcs.hpp"

using namespace astrid;
using Clock = std::chrono::steady_clock;

namespace {
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: %s REF.fits SCI.fits OUT.fits [repeats]\n", argv[0]);
        return 1;
    }
    const int repeats = argc > 4 ? std::max(1, std::atoi(argv[4])) : 1;
    try {
        double best[4] = {1e9, 1e9, 1e9, 1e9};
        for (int rep = 0; rep < repeats; ++rep) {
            auto t = Clock::now();
            auto ref = fits::readImage(argv[1]);
            const auto sciHeader = fits::FitsFile::open(argv[2]).readHeader();
            const auto sciWcs = wcs::SkyWcs::fromHeader(sciHeader);
            const auto refWcs = wcs::SkyWcs::fromHeader(ref.header);
            const int w = static_cast<int>(*sciHeader.getInt("NAXIS1")), h = static_cast<int>(*sciHeader.getInt("NAXIS2"));
            MaskedImage in;
            in.variance = Image<float>(ref.image.width(), ref.image.height(), 1.0f);
            in.mask = Image<std::uint16_t>(ref.image.width(), ref.image.height(), 0);
            in.image = std::move(ref.image);
            const double tRead = since(t);
            t = Clock::now();
            const auto map = registration::PixelMap::fromWcs(sciWcs, refWcs, w, h);
            const double tMap = since(t);
            t = Clock::now();
            const MaskedImage out = registration::resample(in, map, w, h);
            const double tResample = since(t);
            t = Clock::now();
            std::filesystem::remove(argv[3]);
            auto f = fits::FitsFile::create(argv[3]);
            f.writeImage(out.image, sciWcs.toHeader());
            f.close();
            const double tWrite = since(t);
            const double now[4] = {tRead, tMap, tResample, tWrite};
            for (int i = 0; i < 4; ++i) best[i] = std::min(best[i], now[i]);
        }
        std::printf("read %.3f map %.3f resample %.3f write %.3f\n", best[0], best[1], best[2], best[3]);
    } catch (const Error& e) {
        std::fprintf(stderr, "resample_fits: %s\n", e.what());
        return 1;
    }
    return 0;
}

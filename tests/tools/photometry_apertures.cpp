// Aperture sums of astrid on a FITS image at positions from a text file, for comparisons with SEP and
// photutils (bench/photometry_peers.py, the python ctest photometry_peers).
//   photometry_apertures IMAGE.fits POSITIONS.txt OUT.csv RADII ANNULUS [REPEAT]
//   RADII "3,5,8" (px); ANNULUS "12,20" (rIn,rOut px); positions "x y" per line, 0-based pixels.
// Writes OUT.csv: x, y, sum_<r> per radius (raw sums: no background), bkg (annulus sigma-clipped
// median), nbkg, flux_<r> (background-subtracted), flags. Prints the best-of-REPEAT CPU-time of the
// two batch calls (raw sums; sums + annulus) as JSON on stdout. Variance 1 everywhere, no mask.
#include <algorithm>
#include <ctime>
#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "astrid/fits/fits_file.hpp"
#include "astrid/photometry/aperture.hpp"

using namespace astrid;

namespace {
std::vector<double> parseList(const std::string& s) {
    std::vector<double> v;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) v.push_back(std::stod(item));
    return v;
}

template <class F>
double bestSeconds(int repeat, F&& f) {
    double best = 1e300;
    for (int i = 0; i < repeat; ++i) {
        const std::clock_t t0 = std::clock();
        f();
        best = std::min(best, static_cast<double>(std::clock() - t0) / CLOCKS_PER_SEC);
    }
    return best;
}
}  // namespace

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: %s IMAGE.fits POSITIONS.txt OUT.csv RADII ANNULUS [REPEAT]\n", argv[0]);
        return 2;
    }
    try {
        MaskedImage im;
        im.image = fits::readImage(argv[1]).image;
        im.variance = Image<float>(im.image.width(), im.image.height(), 1.0f);
        std::vector<photometry::PixelPosition> pos;
        std::ifstream in(argv[2]);
        double x = 0, y = 0;
        while (in >> x >> y) pos.push_back({x, y});
        photometry::ApertureConfig raw;
        raw.radiiPx = parseList(argv[4]);
        raw.background = photometry::LocalBackground::None;
        photometry::ApertureConfig ann = raw;
        const std::vector<double> a = parseList(argv[5]);
        if (a.size() != 2) throw std::runtime_error("ANNULUS must be rIn,rOut");
        ann.background = photometry::LocalBackground::Median;
        ann.annulusInnerPx = a[0];
        ann.annulusOuterPx = a[1];
        const int repeat = argc > 6 ? std::stoi(argv[6]) : 1;

        std::vector<photometry::ApertureResult> rRaw, rAnn;
        const double tRaw = bestSeconds(repeat, [&] { rRaw = photometry::aperturePhotometry(im, pos, raw); });
        const double tAnn = bestSeconds(repeat, [&] { rAnn = photometry::aperturePhotometry(im, pos, ann); });

        std::FILE* out = std::fopen(argv[3], "w");
        if (!out) throw std::runtime_error(std::string("cannot write ") + argv[3]);
        std::fprintf(out, "x,y");
        for (double r : raw.radiiPx) std::fprintf(out, ",sum_%g", r);
        std::fprintf(out, ",bkg,nbkg");
        for (double r : raw.radiiPx) std::fprintf(out, ",flux_%g", r);
        std::fprintf(out, ",flags\n");
        for (std::size_t i = 0; i < pos.size(); ++i) {
            std::fprintf(out, "%.17g,%.17g", pos[i].x, pos[i].y);
            for (const auto& s : rRaw[i].apertures) std::fprintf(out, ",%.17g", s.rawSum);
            std::fprintf(out, ",%.17g,%d", rAnn[i].background, rAnn[i].nBackground);
            for (const auto& s : rAnn[i].apertures) std::fprintf(out, ",%.17g", s.flux);
            std::fprintf(out, ",%u\n", rAnn[i].flags);
        }
        std::fclose(out);
        std::printf("{\"positions\": %zu, \"raw_s\": %.6f, \"annulus_s\": %.6f}\n", pos.size(), tRaw, tAnn);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "photometry_apertures: %s\n", e.what());
        return 1;
    }
}

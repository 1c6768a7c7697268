// The only translation unit that includes wcslib: status codes become WcsError here.
#include "astrid/wcs/sky_wcs.hpp"

#include <wcs.h>
#include <wcsfix.h>
#include <wcshdr.h>
#include <wcsprintf.h>
#include <dis.h>

#include <cmath>
#include <numbers>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"

namespace astrid::wcs {

struct SkyWcs::Impl {
    wcsprm* w = nullptr;
    std::string source;
    ~Impl() {
        if (w) {
            wcsfree(w);
            std::free(w);
        }
    }
};

namespace {
std::string wcsMessage(const wcsprm* w, int status) {
    std::string msg = (w && w->err && w->err->msg[0]) ? w->err->msg : "";
    if (msg.empty() && status > 0 && status < 15) msg = wcs_errmsg[status];
    return msg + " [wcslib status " + std::to_string(status) + "]";
}

wcsprm* deepCopy(const wcsprm* src) {
    auto* dst = static_cast<wcsprm*>(std::calloc(1, sizeof(wcsprm)));
    dst->flag = -1;
    int status = wcssub(1, src, nullptr, nullptr, dst);
    if (status == 0) status = wcsset(dst);
    if (status) {
        std::string msg = wcsMessage(dst, status);
        wcsfree(dst);
        std::free(dst);
        throw WcsError("cannot copy WCS: " + msg);
    }
    return dst;
}

bool isCelestial(const wcsprm* w) { return w->lng >= 0 && w->lat >= 0; }
}  // namespace

namespace {
// Only WCS keywords (primary and alternate descriptions, distortions) reach wcspih, each a valid
// FITS keyword with printable ASCII: wcslib's header lexer is not robust against arbitrary garbage
// (found by fuzzing: a strcpy overflow inside wcspih on a mangled header).
bool isWcsKey(const std::string& key) {
    if (key.empty() || key.size() > 8) return false;
    for (char c : key)
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
    static const char* kPrefixes[] = {"NAXIS", "WCSAXES", "CTYPE", "CUNIT", "CRVAL", "CRPIX", "CDELT", "CROTA",
                                      "CD", "PC", "PV", "PS", "LONPOLE", "LATPOLE", "RADESYS", "RADECSYS",
                                      "EQUINOX", "EPOCH", "MJD-OBS", "DATE-OBS", "MJDREF", "DATEREF", "WCSNAME",
                                      "A_", "B_", "AP_", "BP_", "DP", "DQ", "CPDIS", "CQDIS", "CPERR", "CQERR",
                                      "RESTFRQ", "RESTWAV", "SPECSYS", "VELREF"};
    for (const char* p : kPrefixes)
        if (key.rfind(p, 0) == 0) return true;
    return false;
}

fits::Header wcsCards(const fits::Header& header) {
    fits::Header out(header.source());
    for (const fits::Card& c : header.cards()) {
        if (!isWcsKey(c.key)) continue;
        fits::Card clean = c;
        for (char& ch : clean.value)
            if (ch < 32 || ch > 126) ch = ' ';
        clean.comment.clear();
        out.append(std::move(clean));
    }
    return out;
}
}  // namespace

SkyWcs SkyWcs::fromHeader(const fits::Header& header) {
    const std::string cards = wcsCards(header).toCardString();
    const int nkeyrec = static_cast<int>(cards.size() / 80);
    int nreject = 0, nwcs = 0;
    wcsprm* all = nullptr;
    int status = wcspih(const_cast<char*>(cards.c_str()), nkeyrec, WCSHDR_all, 0, &nreject, &nwcs, &all);
    if (status)
        throw WcsError(header.source() + ": cannot parse the WCS header: " +
                       std::string(status < 7 ? wcshdr_errmsg[status] : "wcspih failed"));
    // The primary description (no alternate letter) is the first; it must have celestial axes.
    const wcsprm* chosen = nullptr;
    for (int i = 0; i < nwcs; ++i)
        if (all[i].alt[0] == ' ' || all[i].alt[0] == '\0') chosen = &all[i];
    auto freeAll = [&] { wcsvfree(&nwcs, &all); };
    if (!chosen || nwcs == 0 || std::strlen(chosen->ctype[0]) == 0) {
        freeAll();
        throw WcsError(header.source() + ": no WCS in the header (CTYPE1/CTYPE2 missing)");
    }
    wcsprm* w = nullptr;
    try {
        w = deepCopy(chosen);
    } catch (const WcsError& e) {
        freeAll();
        throw WcsError(header.source() + ": " + e.what());
    }
    freeAll();
    int stat[NWCSFIX];
    int naxis[2] = {0, 0};
    auto n1 = header.getInt("NAXIS1"), n2 = header.getInt("NAXIS2");
    if (n1 && n2) naxis[0] = static_cast<int>(*n1), naxis[1] = static_cast<int>(*n2);
    // Repairs that are always safe: date formats, units, non-standard CTYPEs; no cylfix.
    wcsfix(0, (n1 && n2) ? naxis : nullptr, w, stat);
    status = wcsset(w);
    SkyWcs out;
    out.impl_ = std::make_unique<Impl>();
    out.impl_->w = w;
    out.impl_->source = header.source();
    if (status) throw WcsError(header.source() + ": invalid WCS: " + wcsMessage(w, status));
    if (!isCelestial(w))
        throw WcsError(header.source() + ": the WCS has no celestial axis pair (CTYPE1 = '" +
                       std::string(w->ctype[0]) + "')");
    if (w->naxis != 2)
        throw WcsError(header.source() + ": expected a 2-axis WCS, found " + std::to_string(w->naxis) + " axes");
    return out;
}

SkyWcs SkyWcs::tan(SkyPoint crval, PixelPoint crpix, std::array<double, 4> cd) {
    fits::Header h("generated TAN WCS");
    h.set("NAXIS", 2);
    h.set("CTYPE1", "RA---TAN");
    h.set("CTYPE2", "DEC--TAN");
    h.set("CRVAL1", crval.raDeg);
    h.set("CRVAL2", crval.decDeg);
    h.set("CRPIX1", crpix.x + 1.0);
    h.set("CRPIX2", crpix.y + 1.0);
    h.set("CD1_1", cd[0]);
    h.set("CD1_2", cd[1]);
    h.set("CD2_1", cd[2]);
    h.set("CD2_2", cd[3]);
    h.set("CUNIT1", "deg");
    h.set("CUNIT2", "deg");
    h.set("RADESYS", "ICRS");
    return fromHeader(h);
}

SkyWcs::SkyWcs(const SkyWcs& other) : impl_(std::make_unique<Impl>()) {
    impl_->w = deepCopy(other.impl_->w);
    impl_->source = other.impl_->source;
}

SkyWcs& SkyWcs::operator=(const SkyWcs& other) {
    if (this != &other) {
        SkyWcs copy(other);
        *this = std::move(copy);
    }
    return *this;
}

SkyWcs::SkyWcs(SkyWcs&&) noexcept = default;
SkyWcs& SkyWcs::operator=(SkyWcs&&) noexcept = default;
SkyWcs::~SkyWcs() = default;

void SkyWcs::pixelToSky(std::span<const double> x, std::span<const double> y, std::span<double> ra,
                        std::span<double> dec) const {
    const std::size_t n = x.size();
    if (y.size() != n || ra.size() != n || dec.size() != n) throw WcsError("pixelToSky: span sizes differ");
    if (n == 0) return;
    std::vector<double> pix(2 * n), img(2 * n), world(2 * n), phi(n), theta(n);
    std::vector<int> stat(n);
    for (std::size_t i = 0; i < n; ++i) {
        pix[2 * i] = x[i] + 1.0;  // 0-based -> FITS 1-based
        pix[2 * i + 1] = y[i] + 1.0;
    }
    wcsprm* w = impl_->w;
    const int status = wcsp2s(w, static_cast<int>(n), 2, pix.data(), img.data(), phi.data(), theta.data(),
                              world.data(), stat.data());
    if (status && status != 8) throw WcsError(impl_->source + ": pixel->sky failed: " + wcsMessage(w, status));
    const int lng = w->lng, lat = w->lat;
    for (std::size_t i = 0; i < n; ++i) {
        if (stat[i]) {
            ra[i] = dec[i] = std::numeric_limits<double>::quiet_NaN();
            continue;
        }
        double a = std::fmod(world[2 * i + static_cast<std::size_t>(lng)], 360.0);
        if (a < 0) a += 360.0;
        ra[i] = a;
        dec[i] = world[2 * i + static_cast<std::size_t>(lat)];
    }
}

void SkyWcs::skyToPixel(std::span<const double> ra, std::span<const double> dec, std::span<double> x,
                        std::span<double> y) const {
    const std::size_t n = ra.size();
    if (dec.size() != n || x.size() != n || y.size() != n) throw WcsError("skyToPixel: span sizes differ");
    if (n == 0) return;
    std::vector<double> pix(2 * n), img(2 * n), world(2 * n), phi(n), theta(n);
    std::vector<int> stat(n);
    wcsprm* w = impl_->w;
    const auto lng = static_cast<std::size_t>(w->lng), lat = static_cast<std::size_t>(w->lat);
    for (std::size_t i = 0; i < n; ++i) {
        world[2 * i + lng] = ra[i];
        world[2 * i + lat] = dec[i];
    }
    const int status = wcss2p(w, static_cast<int>(n), 2, world.data(), phi.data(), theta.data(), img.data(),
                              pix.data(), stat.data());
    if (status && status != 9) throw WcsError(impl_->source + ": sky->pixel failed: " + wcsMessage(w, status));
    for (std::size_t i = 0; i < n; ++i) {
        if (stat[i]) {
            x[i] = y[i] = std::numeric_limits<double>::quiet_NaN();
            continue;
        }
        x[i] = pix[2 * i] - 1.0;
        y[i] = pix[2 * i + 1] - 1.0;
    }
}

SkyPoint SkyWcs::pixelToSky(double x, double y) const {
    double ra = 0, dec = 0;
    pixelToSky(std::span<const double>(&x, 1), std::span<const double>(&y, 1), std::span<double>(&ra, 1),
               std::span<double>(&dec, 1));
    if (std::isnan(ra))
        throw WcsError(impl_->source + ": pixel (" + std::to_string(x) + ", " + std::to_string(y) +
                       ") has no sky position");
    return {ra, dec};
}

PixelPoint SkyWcs::skyToPixel(double raDeg, double decDeg) const {
    double x = 0, y = 0;
    skyToPixel(std::span<const double>(&raDeg, 1), std::span<const double>(&decDeg, 1), std::span<double>(&x, 1),
               std::span<double>(&y, 1));
    if (std::isnan(x))
        throw WcsError(impl_->source + ": sky position (" + std::to_string(raDeg) + ", " + std::to_string(decDeg) +
                       ") has no pixel");
    return {x, y};
}

double SkyWcs::pixelScaleArcsec(double x, double y) const {
    const SkyPoint c = pixelToSky(x, y);
    const SkyPoint px = pixelToSky(x + 1.0, y);
    const SkyPoint py = pixelToSky(x, y + 1.0);
    const double cosd = std::cos(c.decDeg * std::numbers::pi / 180.0);
    // Local Jacobian determinant on the sky (small offsets: flat approximation is exact enough).
    double dra1 = px.raDeg - c.raDeg, dra2 = py.raDeg - c.raDeg;
    if (dra1 > 180) dra1 -= 360;
    if (dra1 < -180) dra1 += 360;
    if (dra2 > 180) dra2 -= 360;
    if (dra2 < -180) dra2 += 360;
    const double a = dra1 * cosd, b = dra2 * cosd;
    const double cc = px.decDeg - c.decDeg, d = py.decDeg - c.decDeg;
    return std::sqrt(std::fabs(a * d - b * cc)) * 3600.0;
}

std::string SkyWcs::projection() const {
    const wcsprm* w = impl_->w;
    // wcslib turns TPV into TAN plus a distortion (and keeps SIP as one): report the distortion.
    for (const disprm* d : {w->lin.dispre, w->lin.disseq}) {
        if (!d) continue;
        for (int i = 0; i < w->naxis; ++i) {
            const std::string type = d->dtype[i];
            if (type == "TPV") return "TPV";
            if (type == "SIP") return "TAN-SIP";
        }
    }
    const std::string ctype = w->ctype[w->lng];
    return ctype.size() >= 8 ? ctype.substr(5, 3) : ctype;
}

fits::Header SkyWcs::toHeader() const {
    int nkeyrec = 0;
    char* header = nullptr;
    int status = wcshdo(WCSHDO_safe, impl_->w, &nkeyrec, &header);
    if (status) throw WcsError(impl_->source + ": cannot write WCS header: " + wcsMessage(impl_->w, status));
    fits::Header out;
    for (int i = 0; i < nkeyrec; ++i) {
        std::string card(header + 80 * i, 80);
        std::string key(text::trim(card.substr(0, 8)));
        if (key.empty() || key == "COMMENT" || key == "HISTORY" || card[8] != '=') continue;
        std::string rest = card.substr(10);
        std::string comment;
        fits::Card c;
        c.key = key;
        const auto t = text::trim(rest);
        if (!t.empty() && t.front() == '\'') {
            const auto close = t.find('\'', 1);
            c.value = std::string(text::trim(t.substr(1, close - 1)));
            c.isString = true;
        } else {
            const auto slash = t.find('/');
            c.value = std::string(text::trim(t.substr(0, slash)));
        }
        out.append(std::move(c));
    }
    std::free(header);  // wcshdo allocates with malloc
    return out;
}

double footprintOverlap(const SkyWcs& a, int widthA, int heightA, const SkyWcs& b, int widthB, int heightB,
                        int samples) {
    std::vector<double> x, y;
    for (int j = 0; j < samples; ++j)
        for (int i = 0; i < samples; ++i) {
            x.push_back(-0.5 + (i + 0.5) * widthA / samples);
            y.push_back(-0.5 + (j + 0.5) * heightA / samples);
        }
    const std::size_t n = x.size();
    std::vector<double> ra(n), dec(n), bx(n), by(n);
    a.pixelToSky(x, y, ra, dec);
    b.skyToPixel(ra, dec, bx, by);
    std::size_t inside = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (bx[i] >= -0.5 && bx[i] < widthB - 0.5 && by[i] >= -0.5 && by[i] < heightB - 0.5) ++inside;
    return static_cast<double>(inside) / static_cast<double>(n);
}

bool footprintContains(const SkyWcs& wcs, int width, int height, SkyPoint p, double marginPx) {
    double x = 0, y = 0;
    wcs.skyToPixel(std::span<const double>(&p.raDeg, 1), std::span<const double>(&p.decDeg, 1),
                   std::span<double>(&x, 1), std::span<double>(&y, 1));
    if (std::isnan(x)) return false;
    return x >= -0.5 + marginPx && x < width - 0.5 - marginPx && y >= -0.5 + marginPx && y < height - 0.5 - marginPx;
}

}  // namespace astrid::wcs

// The mesh spline behind estimateBackground (see detail.hpp).
#include <algorithm>
#include <cmath>
#include <utility>

#include "detail.hpp"

namespace astrid::background::detail {

Cells makeCells(int n, int boxSize) {
    Cells c;
    c.n = n;
    const double ratio = static_cast<double>(n) / static_cast<double>(std::max(1, boxSize));
    c.count = std::clamp(static_cast<int>(std::lround(ratio)), 1, std::max(1, n));
    return c;
}

Spline1d::Spline1d(std::vector<double> nodes) : t_(std::move(nodes)) {
    const std::size_t m = t_.size();
    for (std::size_t i = 0; i + 1 < m; ++i) {
        h_.push_back(t_[i + 1] - t_[i]);
        invH_.push_back(1.0 / h_.back());
    }
    if (m < 3) return;
    // Interior rows i = 1..m-2 of h_{i-1} M_{i-1} + 2 (h_{i-1} + h_i) M_i + h_i M_{i+1} = rhs_i with
    // M_0 = M_{m-1} = 0 (natural ends): diagonally dominant, so plain Thomas elimination is stable.
    const std::size_t k = m - 2;
    invDenom_.resize(k);
    cprime_.resize(k);
    for (std::size_t r = 0; r < k; ++r) {
        const double sub = h_[r], diag = 2.0 * (h_[r] + h_[r + 1]), sup = h_[r + 1];
        const double denom = r == 0 ? diag : diag - sub * cprime_[r - 1];
        invDenom_[r] = 1.0 / denom;
        cprime_[r] = sup * invDenom_[r];
    }
}

void Spline1d::pieces(const double* v, double* c, std::vector<double>& scratch) const {
    const std::size_t m = t_.size();
    if (m == 1) {
        for (std::size_t p = 0; p < 2; ++p) {
            c[4 * p] = v[0];
            c[4 * p + 1] = c[4 * p + 2] = c[4 * p + 3] = 0.0;
        }
        return;
    }
    // Second derivatives M (natural: zero at both ends).
    scratch.assign(m, 0.0);
    double* M = scratch.data();
    if (m >= 3) {
        const std::size_t k = m - 2;
        for (std::size_t r = 0; r < k; ++r) {
            const std::size_t i = r + 1;
            const double rhs = 6.0 * ((v[i + 1] - v[i]) * invH_[i] - (v[i] - v[i - 1]) * invH_[i - 1]);
            M[i] = (r == 0 ? rhs : rhs - h_[r] * M[i - 1]) * invDenom_[r];
        }
        for (std::size_t r = k - 1; r-- > 0;) M[r + 1] -= cprime_[r] * M[r + 2];
    }
    // Left extension: the line through v_0 with the spline's slope there.
    // (Divisions replaced by precomputed reciprocals: this runs once per image row and map.)
    const double h0 = h_[0];
    c[0] = v[0];
    c[1] = (v[1] - v[0]) * invH_[0] - h0 * (2.0 * M[0] + M[1]) * (1.0 / 6.0);
    c[2] = c[3] = 0.0;
    for (std::size_t i = 0; i + 1 < m; ++i) {
        double* ci = c + 4 * (i + 1);
        const double h = h_[i];
        ci[0] = v[i];
        ci[1] = (v[i + 1] - v[i]) * invH_[i] - h * (2.0 * M[i] + M[i + 1]) * (1.0 / 6.0);
        ci[2] = 0.5 * M[i];
        ci[3] = (M[i + 1] - M[i]) * invH_[i] * (1.0 / 6.0);
    }
    const double hl = h_[m - 2];
    double* ce = c + 4 * m;
    ce[0] = v[m - 1];
    ce[1] = (v[m - 1] - v[m - 2]) * invH_[m - 2] + hl * (M[m - 2] + 2.0 * M[m - 1]) * (1.0 / 6.0);
    ce[2] = ce[3] = 0.0;
}

double Spline1d::origin(std::size_t piece) const noexcept {
    if (piece == 0) return t_.front();
    return t_[std::min(piece, t_.size()) - 1];
}

std::size_t Spline1d::pieceOf(double x) const noexcept {
    return static_cast<std::size_t>(std::upper_bound(t_.begin(), t_.end(), x) - t_.begin());
}

std::vector<double> centres(const Cells& c) {
    std::vector<double> t(static_cast<std::size_t>(c.count));
    for (int i = 0; i < c.count; ++i) t[static_cast<std::size_t>(i)] = c.centre(i);
    return t;
}

MeshSpline::MeshSpline(const Cells& cellsX, const Cells& cellsY, const std::vector<double>& mesh)
    : MeshSpline(centres(cellsX), centres(cellsY), cellsX.n, mesh) {}

MeshSpline::MeshSpline(std::vector<double> nodesX, std::vector<double> nodesY, int width,
                       const std::vector<double>& mesh)
    : width_(width), sx_(std::move(nodesX)), sy_(std::move(nodesY)) {
    const std::size_t nx = sx_.size(), ny = sy_.size();
    const std::size_t yPieces = ny + 1;
    yCoeffs_.resize(nx * yPieces * 4);
    std::vector<double> column(ny);
    for (std::size_t i = 0; i < nx; ++i) {
        for (std::size_t j = 0; j < ny; ++j) column[j] = mesh[j * nx + i];
        sy_.pieces(column.data(), yCoeffs_.data() + i * yPieces * 4, scratch_);
    }
    xPieceStart_.resize(nx + 2);
    xPieceStart_[0] = 0;
    for (std::size_t p = 1; p <= nx; ++p)
        xPieceStart_[p] = std::clamp(static_cast<int>(std::ceil(sx_.nodes()[p - 1])), 0, width_);
    xPieceStart_[nx + 1] = width_;
    colValues_.resize(nx);
    xCoeffs_.resize((nx + 1) * 4);
}

void MeshSpline::evalRow(int y, float* out) const {
    const std::size_t nx = sx_.size();
    const std::size_t yPieces = sy_.size() + 1;
    const std::size_t py = sy_.pieceOf(y);
    const double dy = y - sy_.origin(py);
    for (std::size_t i = 0; i < nx; ++i) {
        const double* c = yCoeffs_.data() + (i * yPieces + py) * 4;
        colValues_[i] = c[0] + dy * (c[1] + dy * (c[2] + dy * c[3]));
    }
    sx_.pieces(colValues_.data(), xCoeffs_.data(), scratch_);
    for (std::size_t p = 0; p <= nx; ++p) {
        const double* c = xCoeffs_.data() + 4 * p;
        // Float Horner about the piece's first pixel: |d| <= box size, so float keeps ~1e-7 relative,
        // and blocks of a fixed 8 let the compiler vectorise the loop at -O2.
        const int xa = xPieceStart_[p], xb = xPieceStart_[p + 1];
        if (xa >= xb) continue;
        const double d0 = xa - sx_.origin(p);
        const auto c0 = static_cast<float>(c[0] + d0 * (c[1] + d0 * (c[2] + d0 * c[3])));
        const auto c1 = static_cast<float>(c[1] + d0 * (2.0 * c[2] + 3.0 * d0 * c[3]));
        const auto c2 = static_cast<float>(c[2] + 3.0 * d0 * c[3]);
        const auto c3 = static_cast<float>(c[3]);
        float* o = out + xa;
        forEach8(static_cast<std::size_t>(xb - xa), [&](std::size_t x) {
            const auto d = static_cast<float>(static_cast<int>(x));  // int -> float vectorises, size_t does not
            o[x] = c0 + d * (c1 + d * (c2 + d * c3));
        });
    }
}

}  // namespace astrid::background::detail

#pragma once
// Private to the background module (not API): the box grid, the mesh spline and two loop helpers.
#include <cstddef>
#include <vector>

namespace astrid::background::detail {

/// Calls f(i) for i in [0, n) in fixed blocks of 8. GCC's -O2 vectoriser (the "very cheap" cost
/// model) only takes loops whose trip count is a known multiple of the vector width and that need no
/// run-time alias check, so the per-pixel loops of this module are written as forEach8 over
/// __restrict pointers (a GCC/Clang extension), and they select between values loaded unconditionally
/// (with -ftrapping-math, the default, a conditionally computed float blocks if-conversion). The row
/// kernels are [[gnu::noinline]]: inlined into a larger function they lose the restrict information.
template <class F>
inline void forEach8(std::size_t n, F&& f) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (std::size_t k = 0; k < 8; ++k) f(i + k);
    for (; i < n; ++i) f(i);
}

/// std::isfinite that vectorises: v - v is 0 for finite v and NaN for NaN and +-inf.
inline bool finite(float v) noexcept { return v - v == 0.0f; }
/// std::max / std::min by value: the reference-returning std versions, once inlined, become a select
/// of addresses that the vectoriser gives up on. NaN handling as std (the first argument wins).
inline float maxf(float a, float b) noexcept { return a < b ? b : a; }
inline float minf(float a, float b) noexcept { return b < a ? b : a; }

/// [0, n) cut into `count` cells of equal size to within one pixel: cell i is [edge(i), edge(i + 1)).
struct Cells {
    int n = 0;
    int count = 1;
    int edge(int i) const noexcept { return static_cast<int>(static_cast<long long>(i) * n / count); }
    /// Pixel coordinate of the centre of cell i (pixel centres at integers).
    double centre(int i) const noexcept { return 0.5 * (edge(i) + edge(i + 1) - 1); }
};

/// round(n / boxSize), at least 1 and at most n.
Cells makeCells(int n, int boxSize);
/// The cell centres.
std::vector<double> centres(const Cells& c);

/// A natural cubic spline through values at fixed nodes t_0 < ... < t_{m-1}, extended linearly
/// (with the end slopes) outside [t_0, t_{m-1}]. The tridiagonal system depends only on the nodes,
/// so it is factorised once and every solve is two sweeps. m == 1 gives a constant, m == 2 a line.
class Spline1d {
public:
    explicit Spline1d(std::vector<double> nodes);
    std::size_t size() const noexcept { return t_.size(); }
    const std::vector<double>& nodes() const noexcept { return t_; }

    /// The m + 1 polynomial pieces for `values` (size m): piece 0 covers (-inf, t_0), piece j in
    /// 1..m-1 covers [t_{j-1}, t_j), piece m covers [t_{m-1}, inf). Piece j is
    /// c[4j] + c[4j+1] d + c[4j+2] d^2 + c[4j+3] d^3 with d = x - origin(j). `scratch` avoids allocation.
    void pieces(const double* values, double* coeffs, std::vector<double>& scratch) const;
    /// Origin of piece j (the node its polynomial is expanded about).
    double origin(std::size_t piece) const noexcept;
    /// Index of the piece that contains x.
    std::size_t pieceOf(double x) const noexcept;

private:
    std::vector<double> t_;
    std::vector<double> h_, invH_;  // t_{i+1} - t_i and its reciprocal
    std::vector<double> invDenom_;  // Thomas algorithm: 1 / diagonal after elimination (interior nodes)
    std::vector<double> cprime_;    // and the eliminated super-diagonal
};

/// Natural bicubic (tensor-product) spline through a mesh of values, evaluated one image row at a time:
/// first along y for every mesh column (coefficients precomputed), then along x for the row. The
/// result is C2 inside the node hull and linear outside it.
class MeshSpline {
public:
    /// mesh: nx * ny values, row-major (mesh[j * nx + i] at (nodesX[i], nodesY[j])), evaluated on the
    /// integer grid 0..width-1 (any grid: a binned image passes its own node coordinates).
    MeshSpline(std::vector<double> nodesX, std::vector<double> nodesY, int width, const std::vector<double>& mesh);
    /// The usual case: nodes at the cell centres, evaluated on the image's pixels.
    MeshSpline(const Cells& cellsX, const Cells& cellsY, const std::vector<double>& mesh);
    int width() const noexcept { return width_; }
    /// Writes the spline at pixels (0..width-1, y) into out. Not thread-safe (shared scratch).
    void evalRow(int y, float* out) const;

private:
    int width_ = 0;
    Spline1d sx_, sy_;
    std::vector<double> yCoeffs_;   // [column i][piece][4]
    std::vector<int> xPieceStart_;  // first pixel of each x piece, size nx + 2
    mutable std::vector<double> colValues_, xCoeffs_, scratch_;
};

}  // namespace astrid::background::detail

#pragma once
// Pixel containers. Convention (pinned by tests): pixels are 0-based, pixel centres sit at integer
// coordinates, x is the column (FITS NAXIS1, fastest varying), storage is data[y * width + x].
// FITS 1-based indices appear only inside the fits/ and wcs/ modules.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <span>
#include <stdexcept>
#include <vector>

namespace astrid {

/// Half-open integer pixel box [x0, x1) x [y0, y1).
struct Box {
    int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    int width() const noexcept { return x1 - x0; }
    int height() const noexcept { return y1 - y0; }
    bool empty() const noexcept { return x1 <= x0 || y1 <= y0; }
    bool contains(int x, int y) const noexcept { return x >= x0 && x < x1 && y >= y0 && y < y1; }
    Box intersect(const Box& o) const noexcept;
};

/// Allocator that leaves trivially constructible values uninitialised on resize: a reader that
/// overwrites every pixel (FITS, FFT output) should not pay a zero-filling pass over the image.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = DefaultInitAllocator<U>;
    };
    using std::allocator<T>::allocator;
    template <class U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible_v<U>) {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};

/// Tag: construct an image whose pixels the caller overwrites before reading.
struct Uninitialized {};

/// A dense 2-D image owning its pixels, row-major.
template <class T>
class Image {
public:
    using value_type = T;
    Image() = default;
    Image(int width, int height, T fill = T{})
        : width_(checkDim(width)), height_(checkDim(height)),
          pixels_(static_cast<std::size_t>(width_) * static_cast<std::size_t>(height_), fill) {}
    /// Pixels left uninitialised: the caller must write every one before reading.
    Image(int width, int height, Uninitialized)
        : width_(checkDim(width)), height_(checkDim(height)),
          pixels_(static_cast<std::size_t>(width_) * static_cast<std::size_t>(height_)) {}

    int width() const noexcept { return width_; }
    int height() const noexcept { return height_; }
    std::size_t size() const noexcept { return pixels_.size(); }
    bool empty() const noexcept { return pixels_.empty(); }
    Box bbox() const noexcept { return Box{0, 0, width_, height_}; }

    T& operator()(int x, int y) noexcept { return pixels_[index(x, y)]; }
    const T& operator()(int x, int y) const noexcept { return pixels_[index(x, y)]; }
    /// Bounds-checked access; throws std::out_of_range.
    T& at(int x, int y) {
        if (!bbox().contains(x, y)) throw std::out_of_range("pixel outside image");
        return (*this)(x, y);
    }

    T* data() noexcept { return pixels_.data(); }
    const T* data() const noexcept { return pixels_.data(); }
    std::span<T> pixels() noexcept { return pixels_; }
    std::span<const T> pixels() const noexcept { return pixels_; }

private:
    static int checkDim(int n) {
        if (n < 0) throw std::invalid_argument("negative image dimension");
        return n;
    }
    std::size_t index(int x, int y) const noexcept {
        return static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x);
    }
    int width_ = 0;
    int height_ = 0;
    std::vector<T, DefaultInitAllocator<T>> pixels_;
};

/// Mask plane bits. Several may be set on one pixel.
enum class MaskBit : std::uint16_t {
    Bad = 1u << 0,          ///< bad column/pixel from the detector or a bad-pixel mask
    Saturated = 1u << 1,    ///< at or above SATURATE
    NoData = 1u << 2,       ///< NaN/Inf or outside the footprint
    Edge = 1u << 3,         ///< too close to the image edge for the stage that set it
    CosmicRay = 1u << 4,    ///< flagged cosmic ray
    Interpolated = 1u << 5, ///< value interpolated over
};
constexpr std::uint16_t operator|(MaskBit a, MaskBit b) noexcept {
    return static_cast<std::uint16_t>(static_cast<std::uint16_t>(a) | static_cast<std::uint16_t>(b));
}
constexpr std::uint16_t bits(MaskBit b) noexcept { return static_cast<std::uint16_t>(b); }

/// Image, mask and variance on one pixel grid (variance in image units squared).
struct MaskedImage {
    Image<float> image;
    Image<std::uint16_t> mask;
    Image<float> variance;

    MaskedImage() = default;
    MaskedImage(int width, int height)
        : image(width, height, 0.0f), mask(width, height, 0), variance(width, height, 0.0f) {}
    int width() const noexcept { return image.width(); }
    int height() const noexcept { return image.height(); }
};

}  // namespace astrid

#pragma once
// A FITS header as ordered cards with typed look-up. Keys are upper case, as FITS stores them.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace astrid::fits {

/// One header card; `value` holds the FITS value text (strings without their quotes).
struct Card {
    std::string key;
    std::string value;
    std::string comment;
    bool isString = false;
};

class Header {
public:
    Header() = default;
    /// `source` names the file and HDU in error messages ("img.fits[1]").
    explicit Header(std::string source) : source_(std::move(source)) {}

    const std::string& source() const noexcept { return source_; }
    const std::vector<Card>& cards() const noexcept { return cards_; }
    bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }

    std::optional<std::string> getString(std::string_view key) const;
    /// Numeric value; nullopt when the key is absent or empty. Throws FitsError when the value
    /// is present but not a number (a garbage header must not read as "absent").
    std::optional<double> getDouble(std::string_view key) const;
    std::optional<long long> getInt(std::string_view key) const;
    std::optional<bool> getBool(std::string_view key) const;

    /// As above but the key must exist; throws FitsError naming key and source.
    std::string requireString(std::string_view key) const;
    double requireDouble(std::string_view key) const;

    /// Sets (replacing in place, or appending) a card.
    void set(std::string_view key, std::string_view value, std::string_view comment = {});
    void set(std::string_view key, const char* value, std::string_view comment = {}) {
        set(key, std::string_view(value), comment);
    }
    void set(std::string_view key, double value, std::string_view comment = {});
    void set(std::string_view key, long long value, std::string_view comment = {});
    void set(std::string_view key, int value, std::string_view comment = {}) {
        set(key, static_cast<long long>(value), comment);
    }
    void setBool(std::string_view key, bool value, std::string_view comment = {});
    void erase(std::string_view key);
    /// Appends a raw card (used when reading; keeps duplicates such as HISTORY).
    void append(Card card) { cards_.push_back(std::move(card)); }

    /// The header as concatenated 80-character FITS cards (what wcslib's wcspih reads).
    std::string toCardString() const;

private:
    const Card* find(std::string_view key) const noexcept;
    void setCard(std::string_view key, std::string value, std::string_view comment, bool isString);
    std::string source_;
    std::vector<Card> cards_;
};

}  // namespace astrid::fits

#include "astrid/fits/header.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"

namespace astrid::fits {
namespace {
// Structural keywords cfitsio writes itself; user headers never set them.
std::string padCard(std::string card) {
    card.resize(80, ' ');
    return card;
}

std::optional<double> parseNumber(std::string_view text) {
    text = text::trim(text);
    if (text.empty()) return std::nullopt;
    std::string s(text);
    for (char& c : s)
        if (c == 'D' || c == 'd') c = 'E';  // FITS allows Fortran exponents
    double v = 0.0;
    const char* b = s.data();
    if (*b == '+') ++b;
    auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}
}  // namespace

const Card* Header::find(std::string_view key) const noexcept {
    for (const Card& c : cards_)
        if (c.key == key) return &c;
    return nullptr;
}

std::optional<std::string> Header::getString(std::string_view key) const {
    const Card* c = find(key);
    if (!c) return std::nullopt;
    return std::string(text::trim(c->value));
}

std::optional<double> Header::getDouble(std::string_view key) const {
    const Card* c = find(key);
    if (!c || text::trim(c->value).empty()) return std::nullopt;
    auto v = parseNumber(c->value);
    if (!v || c->isString)
        throw FitsError("header key " + std::string(key) + " = '" + c->value + "' is not a number", source_);
    return v;
}

std::optional<long long> Header::getInt(std::string_view key) const {
    auto v = getDouble(key);
    if (!v) return std::nullopt;
    if (std::floor(*v) != *v)
        throw FitsError("header key " + std::string(key) + " = '" + find(key)->value + "' is not an integer",
                        source_);
    return static_cast<long long>(*v);
}

std::optional<bool> Header::getBool(std::string_view key) const {
    const Card* c = find(key);
    if (!c) return std::nullopt;
    const auto v = text::trim(c->value);
    if (v == "T") return true;
    if (v == "F") return false;
    throw FitsError("header key " + std::string(key) + " = '" + c->value + "' is not a logical (T/F)", source_);
}

std::string Header::requireString(std::string_view key) const {
    auto v = getString(key);
    if (!v) throw FitsError("required header key " + std::string(key) + " is missing", source_);
    return *v;
}

double Header::requireDouble(std::string_view key) const {
    auto v = getDouble(key);
    if (!v) throw FitsError("required header key " + std::string(key) + " is missing", source_);
    return *v;
}

void Header::setCard(std::string_view key, std::string value, std::string_view comment, bool isString) {
    Card card{text::toUpper(key), std::move(value), std::string(comment), isString};
    for (Card& c : cards_)
        if (c.key == card.key) {
            c = std::move(card);
            return;
        }
    cards_.push_back(std::move(card));
}

void Header::set(std::string_view key, std::string_view value, std::string_view comment) {
    setCard(key, std::string(value), comment, true);
}

void Header::set(std::string_view key, double value, std::string_view comment) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17G", value);
    std::string v(buf);
    if (v.find_first_of(".EN") == std::string::npos) v += ".0";  // keep it a FITS real
    setCard(key, std::move(v), comment, false);
}

void Header::set(std::string_view key, long long value, std::string_view comment) {
    setCard(key, std::to_string(value), comment, false);
}

void Header::setBool(std::string_view key, bool value, std::string_view comment) {
    setCard(key, value ? "T" : "F", comment, false);
}

void Header::erase(std::string_view key) {
    std::erase_if(cards_, [&](const Card& c) { return c.key == key; });
}

std::string Header::toCardString() const {
    std::string out;
    out.reserve(cards_.size() * 80 + 80);
    for (const Card& c : cards_) {
        if (c.key == "COMMENT" || c.key == "HISTORY" || c.key.empty()) {
            out += padCard(c.key + (c.key.empty() ? "" : " ") + c.value);
            continue;
        }
        std::string card = c.key;
        card.resize(8, ' ');
        if (c.isString) {
            std::string quoted;
            for (char ch : c.value) {
                quoted += ch;
                if (ch == '\'') quoted += '\'';
            }
            card += "= '" + quoted + "'";
        } else {
            std::string v = c.value;
            if (v.size() < 20) v.insert(0, 20 - v.size(), ' ');
            card += "= " + v;
        }
        out += padCard(card);
    }
    out += padCard("END");
    return out;
}

}  // namespace astrid::fits

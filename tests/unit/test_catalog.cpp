// Catalog reading: the real SAI file (acceptance figures), synthetic SAI and CSV variants, the
// writers' round trips, and a robustness run over random and mutated lines.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "astrid/catalog/catalog.hpp"
#include "astrid/catalog/sources.hpp"
#include "astrid/core/angle.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"

namespace astrid::catalog {
namespace {

const std::string kSaiPath = std::string(ASTRID_SHARED_DATA_DIR) + "/catalogs/sai_sncat_compiled.txt";

#define SKIP_WITHOUT_SAI_FILE()                                                                                    \
    if (!std::filesystem::exists(kSaiPath))                                                                        \
    GTEST_SKIP() << "real SAI catalogue not found at " << kSaiPath << " (ASTRID_SHARED_DATA_DIR); skipping"

// Every data row is accounted for exactly once, ids are unique and increasing within each list.
void expectAccounted(const CatalogReport& r) {
    EXPECT_EQ(r.dataRows, r.targets.size() + r.rejected.size() + r.excluded.size()) << r.file;
    std::set<std::int64_t> ids;
    for (const auto& t : r.targets) ids.insert(t.id);
    for (const auto& e : r.excluded) ids.insert(e.targetId);
    EXPECT_EQ(ids.size(), r.targets.size() + r.excluded.size()) << "duplicate target ids";
    for (const auto& t : r.targets) {
        EXPECT_FALSE(t.name.empty());
        EXPECT_TRUE(std::isfinite(t.raDeg) && t.raDeg >= 0.0 && t.raDeg < 360.0) << t.raDeg;
        EXPECT_TRUE(std::isfinite(t.decDeg) && t.decDeg >= -90.0 && t.decDeg <= 90.0) << t.decDeg;
        EXPECT_GT(t.line, 0);
        EXPECT_GE(t.id, 0);
        EXPECT_LT(static_cast<std::size_t>(t.id), r.dataRows);
    }
    for (const auto& j : r.rejected) {
        EXPECT_GT(j.line, 0);
        EXPECT_FALSE(j.category.empty());
    }
}

CatalogReport parseText(const std::string& text, CatalogFormat format = CatalogFormat::Auto,
                        const CatalogFilter& filter = {}) {
    std::istringstream in(text);
    auto r = parseCatalog(in, "memory", format, filter);
    expectAccounted(r);
    return r;
}

const Target* byName(const CatalogReport& r, const std::string& name) {
    for (const auto& t : r.targets)
        if (t.name == name) return &t;
    return nullptr;
}

// ---- synthetic SAI text ----

const std::vector<std::string> kSaiNames = {
    "sn_name",   "gal_name",      "sn_gal_uncert", "gal_ra",       "gal_dec",      "gal_mag",  "gal_mband",
    "gal_mag_ref", "gal_posang",  "gal_inclination", "redshift",   "gal_type",     "gal_logab", "gal_log10d",
    "gal_type_code", "sn_offset_ew", "sn_offset_ns", "sn_mag",     "sn_mflag",     "sn_mband", "sn_qmag",
    "sn_optdisc", "max_date",     "disc_date",     "sn_type",      "sn_ra",        "sn_dec",   "sn_uncert",
    "surveys",   "discoverer",    "sn_comment",    "gal_comment",  "mod_date_arr"};

std::string saiHeader() {
    std::string h, s;
    for (std::size_t i = 0; i < kSaiNames.size(); ++i) {
        if (i) h += '|', s += '+';
        h += "   " + kSaiNames[i] + "   ";
        s += std::string(kSaiNames[i].size() + 6, '-');
    }
    return h + "\n" + s + "\n";
}

struct SaiRow {
    std::string name, host, maxDate, discDate, type, ra, dec;
};

std::string saiRow(const SaiRow& r) {
    std::vector<std::string> f(kSaiNames.size());
    f[0] = r.name;
    f[1] = r.host;
    f[22] = r.maxDate;
    f[23] = r.discDate;
    f[24] = r.type;
    f[25] = r.ra;
    f[26] = r.dec;
    std::string line;
    for (std::size_t i = 0; i < f.size(); ++i) line += (i ? " | " : "") + f[i];
    return line + "\n";
}

// =================================================================================================
// The real SAI file
// =================================================================================================

TEST(CatalogRealSai, AllRowsParse) {
    SKIP_WITHOUT_SAI_FILE();
    const auto r = readCatalog(kSaiPath);
    expectAccounted(r);
    EXPECT_EQ(r.format, CatalogFormat::Sai);
    EXPECT_EQ(r.dataRows, 6539u);
    EXPECT_EQ(r.targets.size(), 6539u);
    EXPECT_EQ(r.rejected.size(), 0u);
    for (const auto& j : r.rejected) ADD_FAILURE() << j.line << ": " << j.category << ": " << j.detail;
    EXPECT_EQ(r.excluded.size(), 0u);
    EXPECT_EQ(r.partialDateRows, 0u);
    const auto undated = std::count_if(r.targets.begin(), r.targets.end(), [](const Target& t) { return !t.discMjd; });
    EXPECT_EQ(undated, 86);
    // ids are the data-row ordinals and lines follow header + separator.
    EXPECT_EQ(r.targets.front().id, 0);
    EXPECT_EQ(r.targets.front().line, 3);
    EXPECT_EQ(r.targets.back().id, 6538);
    EXPECT_EQ(r.targets.back().line, 6541);
}

TEST(CatalogRealSai, MinYear2010) {
    SKIP_WITHOUT_SAI_FILE();
    CatalogFilter f;
    f.minYear = 2010;
    const auto r = readCatalog(kSaiPath, CatalogFormat::Auto, f);
    expectAccounted(r);
    EXPECT_EQ(r.targets.size(), 1236u);
    EXPECT_EQ(r.rejected.size(), 0u);
    EXPECT_EQ(r.excluded.size(), 6539u - 1236u);
    const auto counts = r.exclusionCounts();
    EXPECT_EQ(counts.at("no discovery date (min-year filter)"), 86u);
    EXPECT_EQ(counts.at("discovered before 2010"), 6539u - 1236u - 86u);
    EXPECT_EQ(counts.size(), 2u);
    for (const auto& t : r.targets) EXPECT_GE(civilFromMjd(*t.discMjd).year, 2010) << t.name;
}

TEST(CatalogRealSai, Row2014dm) {
    SKIP_WITHOUT_SAI_FILE();
    const auto r = readCatalog(kSaiPath, CatalogFormat::Sai);
    const Target* t = byName(r, "2014dm");
    ASSERT_NE(t, nullptr);
    EXPECT_NEAR(t->raDeg, 62.029708, 1e-6);  // 04 08 07.13
    EXPECT_NEAR(t->raDeg, (4 + 8 / 60.0 + 7.13 / 3600.0) * 15.0, 1e-12);
    EXPECT_NEAR(t->decDeg, -8.827, 1e-3);  // - 8 49 37.0
    EXPECT_NEAR(t->decDeg, -(8 + 49 / 60.0 + 37.0 / 3600.0), 1e-12);
    ASSERT_TRUE(t->discMjd.has_value());
    EXPECT_EQ(*t->discMjd, mjdFromCivil(2014, 9, 27));
    EXPECT_EQ(*t->discMjd, 56927.0);
    EXPECT_FALSE(t->discDateFromMax);
    EXPECT_FALSE(t->maxMjd.has_value());
    EXPECT_EQ(t->type, "Ia");
    EXPECT_EQ(t->host, "NGC1516A");
    EXPECT_EQ(t->line, 3);
    EXPECT_EQ(t->id, 0);
}

// The AstrID bug: Decs with the sign detached from the degrees ("- 8 49 37.0") lost their sign.
// Count them independently of the parser and check every one kept its sign and magnitude.
TEST(CatalogRealSai, DetachedSignDecs) {
    SKIP_WITHOUT_SAI_FILE();
    const auto r = readCatalog(kSaiPath);
    std::map<long, const Target*> byLine;
    for (const auto& t : r.targets) byLine[t.line] = &t;

    std::ifstream in(kSaiPath);
    std::string line;
    std::getline(in, line);
    const auto header = text::split(line, '|');
    std::size_t decCol = header.size();
    for (std::size_t i = 0; i < header.size(); ++i)
        if (text::trim(header[i]) == "sn_dec") decCol = i;
    ASSERT_LT(decCol, header.size());

    long lineNo = 1;
    std::size_t detached = 0, detachedMinus = 0, zeroDegreesMinus = 0;
    while (std::getline(in, line)) {
        ++lineNo;
        const auto f = text::split(line, '|');
        if (f.size() <= decCol) continue;
        const auto dec = text::trim(f[decCol]);
        if (dec.size() < 2 || (dec[0] != '-' && dec[0] != '+') || dec[1] != ' ') continue;
        ++detached;
        ASSERT_TRUE(byLine.count(lineNo)) << "line " << lineNo;
        const double v = byLine[lineNo]->decDeg;
        EXPECT_LT(std::fabs(v), 10.0) << dec;
        if (dec[0] == '-') {
            ++detachedMinus;
            EXPECT_TRUE(std::signbit(v)) << "line " << lineNo << " '" << dec << "' -> " << v;
            if (text::startsWith(dec, "- 0 ")) ++zeroDegreesMinus;
        } else {
            EXPECT_FALSE(std::signbit(v)) << "line " << lineNo << " '" << dec << "' -> " << v;
        }
    }
    EXPECT_EQ(detached, 2398u);
    EXPECT_EQ(detachedMinus, 1277u);
    EXPECT_EQ(zeroDegreesMinus, 433u);  // "- 0 ..": negative Decs whose degrees field is zero
    // Without the fix, all 1277 detached negatives would have landed in the other hemisphere.
}

TEST(CatalogRealSai, HistoricalSupernovae) {
    SKIP_WITHOUT_SAI_FILE();
    const auto r = readCatalog(kSaiPath);
    for (auto [name, year] : {std::pair{"1006A", 1006}, {"1054A", 1054}, {"1572A", 1572}, {"1604A", 1604}}) {
        const Target* t = byName(r, name);
        ASSERT_NE(t, nullptr) << name;
        ASSERT_TRUE(t->discMjd) << name;
        EXPECT_EQ(civilFromMjd(*t->discMjd).year, year) << name;
    }
}

// =================================================================================================
// Synthetic SAI
// =================================================================================================

TEST(CatalogSai, GarbageLinesAreRejectedAndCategorised) {
    std::string text = saiHeader();
    text += saiRow({"good1", "NGC1", "", "2014-09-27", "Ia", "04 08 07.13", "- 8 49 37.0"});  // line 3
    text += "this is garbage\n";                                                          // 4
    text += "\n";                                                                         // 5 blank
    text += saiRow({"badra", "", "", "2014-09-27", "Ia", "25 00 00.00", "+10 00 00.0"});  // 6
    text += saiRow({"baddec", "", "", "2014-09-27", "Ia", "01 00 00.00", "+95 00 00.0"}); // 7
    text += saiRow({"", "", "", "2014-09-27", "Ia", "01 00 00.00", "+10 00 00.0"});       // 8
    text += saiRow({"baddate", "", "", "2014-02-30", "Ia", "01 00 00.00", "+10 00 00.0"});  // 9
    text += saiRow({"badmax", "", "garbage", "2014-02-03", "Ia", "01 00 00.00", "+10 00 00.0"});  // 10
    text += "short | row | with | few | fields\n";                                        // 11
    text += saiRow({"noRa", "", "", "", "", "", "+10 00 00.0"});                          // 12
    text += saiRow({"decimalRa", "", "", "", "", "62.03", "+10 00 00.0"});                // 13
    std::string extra = saiRow({"extra", "", "", "", "", "01 00 00.00", "+10 00 00.0"});
    extra.pop_back();
    text += extra + " | surplus\n";                                                       // 14
    std::string trailing = saiRow({"good2", "", "", "", "II", "23 59 59.99", "-89 59 59.9"});
    trailing.pop_back();
    text += trailing + " |  | \r\n";  // 15: trailing empties and CRLF are fine
    text += "(13 rows)\n";            // psql footer, not data

    const auto r = parseText(text);
    EXPECT_EQ(r.format, CatalogFormat::Sai);
    EXPECT_EQ(r.dataRows, 12u);
    ASSERT_EQ(r.targets.size(), 2u);
    EXPECT_EQ(r.targets[0].name, "good1");
    EXPECT_EQ(r.targets[0].id, 0);
    EXPECT_EQ(r.targets[1].name, "good2");
    EXPECT_EQ(r.targets[1].id, 11);  // ids count rejected rows too: stable under parse failures
    EXPECT_EQ(r.targets[1].line, 15);
    EXPECT_NEAR(r.targets[1].decDeg, -(89 + 59 / 60.0 + 59.9 / 3600), 1e-12);

    const auto c = r.rejectionCounts();
    EXPECT_EQ(c.at("wrong column count"), 3u);  // garbage, short row, surplus field
    EXPECT_EQ(c.at("bad ra"), 2u);              // 25h, decimal RA
    EXPECT_EQ(c.at("bad dec"), 1u);
    EXPECT_EQ(c.at("missing name"), 1u);
    EXPECT_EQ(c.at("bad date"), 2u);
    EXPECT_EQ(c.at("missing ra"), 1u);
    ASSERT_EQ(r.rejected.size(), 10u);
    EXPECT_EQ(r.rejected[0].line, 4);
    EXPECT_NE(r.rejected[1].detail.find("25 00 00.00"), std::string::npos) << r.rejected[1].detail;
    EXPECT_NE(r.rejected[4].detail.find("disc_date '2014-02-30'"), std::string::npos) << r.rejected[4].detail;
    EXPECT_NE(r.rejected[5].detail.find("max_date 'garbage'"), std::string::npos) << r.rejected[5].detail;
}

TEST(CatalogSai, DecSigns) {
    std::string text = saiHeader();
    text += saiRow({"detMinus", "", "", "", "", "01 00 00.00", "- 8 49 37.0"});
    text += saiRow({"detPlus", "", "", "", "", "01 00 00.00", "+ 8 38 30.6"});
    text += saiRow({"attMinus", "", "", "", "", "01 00 00.00", "-08 49 37.0"});
    text += saiRow({"attPlus", "", "", "", "", "01 00 00.00", "+38 30 30.6"});
    text += saiRow({"negZero", "", "", "", "", "01 00 00.00", "-0 30 00"});
    text += saiRow({"negZeroDet", "", "", "", "", "01 00 00.00", "- 0 30 00.0"});
    text += saiRow({"negZeroPad", "", "", "", "", "01 00 00.00", "-00 30 00.0"});
    text += saiRow({"posZero", "", "", "", "", "01 00 00.00", "+ 0 30 00.0"});
    text += saiRow({"unsigned", "", "", "", "", "01 00 00.00", "45 00 00.0"});
    text += saiRow({"signLater", "", "", "", "", "01 00 00.00", "+ 8 -49 37.0"});
    const auto r = parseText(text);
    ASSERT_EQ(r.targets.size(), 9u);
    EXPECT_NEAR(byName(r, "detMinus")->decDeg, -8.826944444, 1e-8);
    EXPECT_NEAR(byName(r, "detPlus")->decDeg, 8.641833333, 1e-8);
    EXPECT_NEAR(byName(r, "attMinus")->decDeg, -8.826944444, 1e-8);
    EXPECT_NEAR(byName(r, "attPlus")->decDeg, 38.5085, 1e-8);
    EXPECT_DOUBLE_EQ(byName(r, "negZero")->decDeg, -0.5);
    EXPECT_DOUBLE_EQ(byName(r, "negZeroDet")->decDeg, -0.5);
    EXPECT_DOUBLE_EQ(byName(r, "negZeroPad")->decDeg, -0.5);
    EXPECT_DOUBLE_EQ(byName(r, "posZero")->decDeg, 0.5);
    EXPECT_DOUBLE_EQ(byName(r, "unsigned")->decDeg, 45.0);
    ASSERT_EQ(r.rejected.size(), 1u);
    EXPECT_EQ(r.rejected[0].category, "bad dec");
}

TEST(CatalogSai, DatesFallbackAndMissing) {
    std::string text = saiHeader();
    text += saiRow({"both", "", "2011-06-10", "2011-05-31", "IIb", "13 30 05.12", "+47 10 11.6"});
    text += saiRow({"maxOnly", "", "2011-06-10", "", "IIb", "13 30 05.12", "+47 10 11.6"});
    text += saiRow({"none", "", "", "", "", "13 30 05.12", "+47 10 11.6"});
    text += saiRow({"withTime", "", "", "2011-05-31T12:00:00", "", "13 30 05.12", "+47 10 11.6"});
    const auto r = parseText(text);
    ASSERT_EQ(r.targets.size(), 4u);
    const Target& both = r.targets[0];
    EXPECT_EQ(*both.discMjd, mjdFromCivil(2011, 5, 31));
    EXPECT_EQ(*both.maxMjd, mjdFromCivil(2011, 6, 10));
    EXPECT_FALSE(both.discDateFromMax);
    const Target& maxOnly = r.targets[1];
    EXPECT_EQ(*maxOnly.discMjd, mjdFromCivil(2011, 6, 10));
    EXPECT_TRUE(maxOnly.discDateFromMax);
    const Target& none = r.targets[2];
    EXPECT_FALSE(none.discMjd.has_value());
    EXPECT_FALSE(none.maxMjd.has_value());
    EXPECT_FALSE(none.discDateFromMax);
    EXPECT_DOUBLE_EQ(*r.targets[3].discMjd, mjdFromCivil(2011, 5, 31) + 0.5);
}

TEST(CatalogSai, PartialDates) {
    std::string text = saiHeader();
    text += saiRow({"ym", "", "", "2014-09", "", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"y", "", "", "2014", "", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"y00", "", "", "2014-00-00", "", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"ym00", "", "", "2014-09-00", "", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"dayNoMonth", "", "", "2014-00-05", "", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"month13", "", "", "2014-13", "", "01 00 00.00", "+10 00 00.0"});
    const auto r = parseText(text);
    ASSERT_EQ(r.targets.size(), 4u);
    EXPECT_EQ(*byName(r, "ym")->discMjd, mjdFromCivil(2014, 9, 1));
    EXPECT_EQ(byName(r, "ym")->discPrecision, DatePrecision::Month);
    EXPECT_EQ(*byName(r, "y")->discMjd, mjdFromCivil(2014, 1, 1));
    EXPECT_EQ(byName(r, "y")->discPrecision, DatePrecision::Year);
    EXPECT_EQ(byName(r, "y00")->discPrecision, DatePrecision::Year);
    EXPECT_EQ(byName(r, "ym00")->discPrecision, DatePrecision::Month);
    EXPECT_EQ(r.partialDateRows, 4u);
    EXPECT_EQ(r.rejectionCounts().at("bad date"), 2u);
}

std::string filterFixture() {
    std::string text = saiHeader();
    text += saiRow({"a2015Ia", "", "", "2015-01-01", "Ia", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"b2009Ia", "", "", "2009-12-31", "Ia", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"c_undated", "", "", "", "Ia", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"d2012II", "", "", "2012-05-05", "II", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"e2013IaPec", "", "", "2013-05-05", "IaPec", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"f2014Iacolon", "", "2014-05-05", "", "Ia:", "01 00 00.00", "+10 00 00.0"});
    text += saiRow({"g2016none", "", "", "2016-05-05", "", "01 00 00.00", "+10 00 00.0"});
    text += "broken line\n";
    text += saiRow({"h2017IIn", "", "", "2017-05-05", "IIn", "01 00 00.00", "+10 00 00.0"});
    return text;
}

std::vector<std::string> names(const CatalogReport& r) {
    std::vector<std::string> n;
    for (const auto& t : r.targets) n.push_back(t.name);
    return n;
}

TEST(CatalogFilter, MinYearExcludesUndatedWithReason) {
    CatalogFilter f;
    f.minYear = 2010;
    const auto r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_EQ(names(r), (std::vector<std::string>{"a2015Ia", "d2012II", "e2013IaPec", "f2014Iacolon", "g2016none",
                                                  "h2017IIn"}));
    ASSERT_EQ(r.excluded.size(), 2u);
    EXPECT_EQ(r.excluded[0].reason, "discovered before 2010");
    EXPECT_EQ(r.excluded[0].targetId, 1);
    EXPECT_EQ(r.excluded[1].reason, "no discovery date (min-year filter)");
    EXPECT_EQ(r.excluded[1].targetId, 2);
    EXPECT_EQ(r.excluded[1].line, 5);
    EXPECT_EQ(r.rejected.size(), 1u);
    EXPECT_EQ(r.targets.back().id, 8);  // the broken line still took id 7
}

TEST(CatalogFilter, TypesByPrefix) {
    CatalogFilter f;
    f.types = {"Ia"};
    auto r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_EQ(names(r), (std::vector<std::string>{"a2015Ia", "b2009Ia", "c_undated", "e2013IaPec", "f2014Iacolon"}));
    EXPECT_EQ(r.exclusionCounts().at("type not selected"), 3u);

    f.types = {"II", "IaPec"};
    r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_EQ(names(r), (std::vector<std::string>{"d2012II", "e2013IaPec", "h2017IIn"}));

    f.types = {"ia"};  // case-sensitive
    r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_TRUE(r.targets.empty());
}

TEST(CatalogFilter, LimitAppliesLastInFileOrder) {
    CatalogFilter f;
    f.limit = 2;
    auto r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_EQ(names(r), (std::vector<std::string>{"a2015Ia", "b2009Ia"}));
    EXPECT_EQ(r.exclusionCounts().at("beyond limit"), 6u);

    f.minYear = 2010;
    f.types = {"Ia"};
    r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_EQ(names(r), (std::vector<std::string>{"a2015Ia", "e2013IaPec"}));
    const auto c = r.exclusionCounts();
    EXPECT_EQ(c.at("beyond limit"), 1u);  // f2014Iacolon (dated from max_date)
    EXPECT_EQ(c.at("type not selected"), 3u);
    EXPECT_EQ(c.at("discovered before 2010"), 1u);
    EXPECT_EQ(c.at("no discovery date (min-year filter)"), 1u);

    f = {};
    f.limit = 0;
    r = parseText(filterFixture(), CatalogFormat::Auto, f);
    EXPECT_TRUE(r.targets.empty());
    EXPECT_EQ(r.excluded.size(), 8u);
}

TEST(CatalogSai, HeaderProblemsThrow) {
    std::istringstream noCols("a | b | c\n---+---+---\n1 | 2 | 3\n");
    EXPECT_THROW(parseCatalog(noCols, "x.txt", CatalogFormat::Sai), CatalogError);
    std::istringstream empty("\n\n   \n");
    EXPECT_THROW(parseCatalog(empty, "x.txt", CatalogFormat::Sai), CatalogError);
    try {
        std::istringstream in("sn_name | gal_name\n----+----\n");
        parseCatalog(in, "cat.txt", CatalogFormat::Sai);
        FAIL() << "no throw";
    } catch (const CatalogError& e) {
        EXPECT_EQ(e.file(), "cat.txt");
        EXPECT_EQ(e.line(), 1);
        EXPECT_NE(std::string(e.what()).find("sn_ra"), std::string::npos) << e.what();
    }
    // Columns found by name, not position: a reordered minimal extract reads fine.
    const auto r = parseText("sn_dec | sn_ra | sn_name | disc_date\n-------+------+-------+----\n"
                             "- 1 00 00 | 12 00 00 | x | 2020-01-02\n");
    ASSERT_EQ(r.targets.size(), 1u);
    EXPECT_DOUBLE_EQ(r.targets[0].raDeg, 180.0);
    EXPECT_DOUBLE_EQ(r.targets[0].decDeg, -1.0);
    EXPECT_EQ(*r.targets[0].discMjd, mjdFromCivil(2020, 1, 2));
}

// =================================================================================================
// CSV
// =================================================================================================

TEST(CatalogCsv, QuotedCommentsSexagesimalMjdMissing) {
    const std::string text =
        "\xEF\xBB\xBF# exported from somewhere\n"
        "\n"
        "Name, RA, Dec, Disc_MJD, Type, Host\n"
        "SN 2014dm, 62.0297083, -8.8269444, 56927, Ia, NGC1516A\n"
        "\"SN, quoted\", 04:08:07.13, -08:49:37.0, 56927.5, \"Ia\", \"He said \"\"hi\"\"\"\n"
        "# a comment between rows\n"
        "spaces, 04 08 07.13, - 8 49 37.0, -, -, NA\n"
        "nanDate, 10.5, +20.25, nan, II,\n"
        "  \r\n";
    const auto r = parseText(text);
    EXPECT_EQ(r.format, CatalogFormat::Csv);
    EXPECT_EQ(r.dataRows, 4u);
    ASSERT_EQ(r.targets.size(), 4u);
    const Target& a = r.targets[0];
    EXPECT_EQ(a.name, "SN 2014dm");
    EXPECT_NEAR(a.raDeg, 62.0297083, 1e-12);
    EXPECT_NEAR(a.decDeg, -8.8269444, 1e-12);
    EXPECT_EQ(*a.discMjd, 56927.0);
    EXPECT_EQ(a.type, "Ia");
    EXPECT_EQ(a.host, "NGC1516A");
    EXPECT_EQ(a.line, 4);
    const Target& b = r.targets[1];
    EXPECT_EQ(b.name, "SN, quoted");
    EXPECT_NEAR(b.raDeg, 62.029708333, 1e-8);
    EXPECT_NEAR(b.decDeg, -8.826944444, 1e-8);
    EXPECT_EQ(*b.discMjd, 56927.5);
    EXPECT_EQ(b.host, "He said \"hi\"");
    const Target& c = r.targets[2];
    EXPECT_NEAR(c.decDeg, -8.826944444, 1e-8);
    EXPECT_FALSE(c.discMjd.has_value());
    EXPECT_TRUE(c.type.empty());
    EXPECT_TRUE(c.host.empty());
    EXPECT_FALSE(r.targets[3].discMjd.has_value());
    EXPECT_EQ(r.targets[3].type, "II");
}

TEST(CatalogCsv, AliasesDelimitersAndDateForms) {
    const std::string semi =
        "OBJECT;RAJ2000;DEJ2000;Discovery_Date;CLASS;gal_name\n"
        "iso;1.0;2.0;2014-09-27;Ia;\n"
        "isoTime;1.0;2.0;2014-09-27T06:00:00;Ia;\n"
        "mjdNumber;1.0;2.0;56927;Ia;\n"
        "jdNumber;1.0;2.0;2456927.5;Ia;\n"
        "yearOnly;1.0;2.0;2014;Ia;\n"
        "smallNumber;1.0;2.0;123;Ia;\n"
        "notADate;1.0;2.0;yesterday;Ia;\n";
    const auto r = parseText(semi);
    ASSERT_EQ(r.targets.size(), 5u);
    EXPECT_EQ(*r.targets[0].discMjd, 56927.0);
    EXPECT_EQ(*r.targets[1].discMjd, 56927.25);
    EXPECT_EQ(*r.targets[2].discMjd, 56927.0);
    EXPECT_EQ(*r.targets[3].discMjd, 56927.0);
    EXPECT_EQ(*r.targets[4].discMjd, mjdFromCivil(2014, 1, 1));
    EXPECT_EQ(r.targets[4].discPrecision, DatePrecision::Year);
    EXPECT_EQ(r.rejectionCounts().at("bad date"), 2u);

    const auto tab = parseText("sn_name\tsn_ra\tsn_dec\tmjd\tsn_type\n"
                               "t1\t12:00:00\t+45:00:00\t-311000.25\tIa Pec\n"
                               "t2\t180\t-45\t2020-02-02\t\n");
    ASSERT_EQ(tab.targets.size(), 2u);
    EXPECT_DOUBLE_EQ(tab.targets[0].raDeg, 180.0);
    EXPECT_EQ(*tab.targets[0].discMjd, -311000.25);  // an *mjd* column takes any plausible MJD
    EXPECT_EQ(tab.targets[0].type, "Ia Pec");
    EXPECT_EQ(*tab.targets[1].discMjd, mjdFromCivil(2020, 2, 2));
}

TEST(CatalogCsv, RejectionsAreCategorised) {
    const std::string text =
        "name,ra,dec,date\n"
        "ok,10,20,2014-01-01\n"
        "short,10,20\n"
        "long,10,20,2014-01-01,extra\n"
        "trailingComma,10,20,2014-01-01,\n"
        ",10,20,\n"
        "NA,10,20,\n"
        "badRa,400,20,\n"
        "badDec,10,-91,\n"
        "noRa,,20,\n"
        "noDec,10,nan,\n"
        "\"unterminated,10,20,\n"
        "\"after\"x,10,20,\n"
        "sexRa,25:00:00,20,\n";
    const auto r = parseText(text);
    EXPECT_EQ(names(r), (std::vector<std::string>{"ok", "trailingComma"}));
    const auto c = r.rejectionCounts();
    EXPECT_EQ(c.at("wrong column count"), 2u);
    EXPECT_EQ(c.at("missing name"), 2u);
    EXPECT_EQ(c.at("bad ra"), 2u);
    EXPECT_EQ(c.at("bad dec"), 1u);
    EXPECT_EQ(c.at("missing ra"), 1u);
    EXPECT_EQ(c.at("missing dec"), 1u);
    EXPECT_EQ(c.at("bad quoting"), 2u);
    EXPECT_EQ(r.rejected.front().line, 3);
}

TEST(CatalogCsv, HeaderWithoutPositionsThrows) {
    std::istringstream in("name,x,y\na,1,2\n");
    try {
        parseCatalog(in, "targets.csv");
        FAIL() << "no throw";
    } catch (const CatalogError& e) {
        EXPECT_EQ(e.file(), "targets.csv");
        EXPECT_NE(std::string(e.what()).find("ra/"), std::string::npos) << e.what();
    }
    std::istringstream onlyComments("# nothing\n\n");
    EXPECT_THROW(parseCatalog(onlyComments, "c.csv"), CatalogError);
}

TEST(CatalogFormatDetection, Rules) {
    // '|' in the first line but no separator: CSV with '|' as delimiter.
    const auto pipes = parseText("name|ra|dec\nx|1|2\n");
    EXPECT_EQ(pipes.format, CatalogFormat::Csv);
    ASSERT_EQ(pipes.targets.size(), 1u);
    EXPECT_EQ(formatName(CatalogFormat::Sai), "sai");
    EXPECT_EQ(formatName(CatalogFormat::Csv), "csv");
    EXPECT_EQ(formatName(CatalogFormat::Auto), "auto");
    EXPECT_EQ(formatFromName(" SAI "), CatalogFormat::Sai);
    EXPECT_EQ(formatFromName("csv"), CatalogFormat::Csv);
    EXPECT_FALSE(formatFromName("fits").has_value());
}

// =================================================================================================
// Writers
// =================================================================================================

TEST(CatalogWriters, SaiRoundTrip) {
    std::mt19937_64 rng(12345);
    std::uniform_real_distribution<double> ra(0.0, 360.0), dec(-90.0, 90.0), small(-10.0, 10.0);
    std::vector<Target> in;
    auto add = [&](double r, double d) {
        Target t;
        t.id = static_cast<std::int64_t>(in.size());
        t.name = "sim" + std::to_string(in.size());
        t.raDeg = r;
        t.decDeg = d;
        in.push_back(t);
    };
    for (int i = 0; i < 500; ++i) add(ra(rng), dec(rng));
    for (int i = 0; i < 500; ++i) add(ra(rng), small(rng));  // the detached-sign band
    add(0.0, -0.5);
    add(359.99999999999, 0.0);  // rounds up to 24h: must wrap to 0, not print 24
    add(10.0, -1e-9);
    add(10.0, 90.0);
    add(10.0, -90.0);
    add(15.0 * 23.99999999, -89.99999);
    for (std::size_t i = 0; i < in.size(); ++i) {
        Target& t = in[i];
        switch (i % 6) {
            case 0: t.discMjd = 56927.0 + static_cast<double>(i); break;
            case 1: t.discMjd = 56927.0; t.maxMjd = 56940.0; t.type = "IaPec"; t.host = "NGC 1"; break;
            case 2: t.discMjd = 56940.0; t.maxMjd = 56940.0; t.discDateFromMax = true; break;
            case 3: t.discMjd = 50000.123456; break;  // fractional day: to the millisecond
            case 4: t.discMjd = mjdFromCivil(1999, 4, 1); t.discPrecision = DatePrecision::Month; break;
            default: break;  // undated
        }
    }
    std::ostringstream out;
    writeSaiCatalog(out, in);
    const auto r = parseText(out.str());
    EXPECT_EQ(r.format, CatalogFormat::Sai);
    ASSERT_EQ(r.targets.size(), in.size());
    EXPECT_TRUE(r.rejected.empty());
    double worstArcsec = 0.0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const Target& a = in[i];
        const Target& b = r.targets[i];
        EXPECT_EQ(b.name, a.name);
        EXPECT_EQ(b.id, a.id);
        EXPECT_EQ(b.type, a.type);
        EXPECT_EQ(b.host, a.host);
        worstArcsec = std::max(worstArcsec, angularSeparationDeg(a.raDeg, a.decDeg, b.raDeg, b.decDeg) * 3600.0);
        EXPECT_NEAR(b.decDeg, a.decDeg, 0.01 / 3600.0);
        EXPECT_EQ(b.discDateFromMax, a.discDateFromMax) << i;
        EXPECT_EQ(b.discPrecision, a.discPrecision) << i;
        ASSERT_EQ(b.discMjd.has_value(), a.discMjd.has_value()) << i;
        ASSERT_EQ(b.maxMjd.has_value(), a.maxMjd.has_value()) << i;
        if (a.maxMjd) {
            EXPECT_EQ(*b.maxMjd, *a.maxMjd);
        }
        if (a.discMjd) {
            const double tolerance = *a.discMjd == std::floor(*a.discMjd) ? 0.0 : 1e-3 / 86400.0;
            EXPECT_NEAR(*b.discMjd, *a.discMjd, tolerance) << i;
        }
    }
    EXPECT_LT(worstArcsec, 0.01);
    // The detached sign SAI uses below 10 degrees is what we write, too.
    EXPECT_NE(out.str().find("| - 0 30 00.000 |"), std::string::npos);
    EXPECT_NE(out.str().find("| 00 00 00.0000 |"), std::string::npos);
}

TEST(CatalogWriters, SaiRefusesUnrepresentableTargets) {
    Target t;
    t.name = "a|b";
    std::ostringstream out;
    EXPECT_THROW(writeSaiCatalog(out, {t}), DataError);
    t.name = "";
    EXPECT_THROW(writeSaiCatalog(out, {t}), DataError);
    t.name = "ok";
    t.raDeg = 360.0;
    EXPECT_THROW(writeSaiCatalog(out, {t}), DataError);
    t.raDeg = 1.0;
    t.decDeg = std::nan("");
    EXPECT_THROW(writeSaiCatalog(out, {t}), DataError);
    EXPECT_TRUE(out.str().empty());  // validated before writing anything
}

TEST(CatalogWriters, TargetsCsv) {
    Target a;
    a.id = 7;
    a.name = "2014dm";
    a.raDeg = 62.029708333333;
    a.decDeg = -8.826944444444;
    a.discMjd = 56927.0;
    a.type = "Ia";
    Target b;
    b.id = 9;
    b.name = "needs, \"quotes\"";
    b.raDeg = 1.5;
    b.decDeg = 2.25;
    b.type = " padded";
    std::ostringstream out;
    writeTargetsCsv(out, {a, b});
    EXPECT_EQ(out.str(),
              "id,name,ra_deg,dec_deg,disc_mjd,type\n"
              "7,2014dm,62.02970833,-8.82694444,56927.000000,Ia\n"
              "9,\"needs, \"\"quotes\"\"\",1.50000000,2.25000000,,\" padded\"\n");
    // Our reader takes it back (the name column wins over id).
    const auto r = parseText(out.str());
    ASSERT_EQ(r.targets.size(), 2u);
    EXPECT_EQ(r.targets[0].name, "2014dm");
    EXPECT_EQ(*r.targets[0].discMjd, 56927.0);
    EXPECT_EQ(r.targets[1].name, "needs, \"quotes\"");
    EXPECT_FALSE(r.targets[1].discMjd.has_value());
    EXPECT_NEAR(r.targets[0].decDeg, a.decDeg, 1e-8);
}

// =================================================================================================
// Files
// =================================================================================================

TEST(CatalogFiles, MissingFileThrowsNamingPath) {
    const std::string path = "/nonexistent/dir/catalog.txt";
    try {
        readCatalog(path);
        FAIL() << "no throw";
    } catch (const CatalogError& e) {
        EXPECT_EQ(e.file(), path);
        EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
    EXPECT_THROW(readCatalog(std::filesystem::temp_directory_path().string()), CatalogError);
}

TEST(CatalogFiles, ReadsWrittenFile) {
    const auto path = std::filesystem::temp_directory_path() / ("astrid_test_catalog_" + std::to_string(::getpid()) + ".txt");
    Target t;
    t.id = 0;
    t.name = "x";
    t.raDeg = 12.5;
    t.decDeg = -3.25;
    {
        std::ofstream out(path);
        writeSaiCatalog(out, {t});
    }
    const auto r = readCatalog(path.string());
    std::filesystem::remove(path);
    ASSERT_EQ(r.targets.size(), 1u);
    EXPECT_EQ(r.file, path.string());
    EXPECT_NEAR(r.targets[0].decDeg, -3.25, 1e-9);
}

// =================================================================================================
// Robustness: random and mutated lines never crash and never lose a row.
// =================================================================================================

std::string mutate(std::string s, std::mt19937& rng) {
    static const std::string alphabet = "0123456789 +-:|.,;\"\t#abcdefhmsIaNnT()/\\\xff\x01";
    std::uniform_int_distribution<int> op(0, 5);
    const int edits = std::uniform_int_distribution<int>(1, 4)(rng);
    for (int e = 0; e < edits; ++e) {
        const std::size_t pos = s.empty() ? 0 : std::uniform_int_distribution<std::size_t>(0, s.size() - 1)(rng);
        const char c = alphabet[std::uniform_int_distribution<std::size_t>(0, alphabet.size() - 1)(rng)];
        switch (op(rng)) {
            case 0: if (!s.empty()) s[pos] = c; break;
            case 1: s.insert(s.begin() + static_cast<std::ptrdiff_t>(pos), c); break;
            case 2: if (!s.empty()) s.erase(pos, 1); break;
            case 3: s.resize(pos); break;
            case 4: if (!s.empty()) s.insert(pos, s.substr(pos, 5)); break;
            default: s.clear(); break;
        }
    }
    return s;
}

std::string randomLine(std::mt19937& rng) {
    std::uniform_int_distribution<int> len(0, 120), byte(1, 255);
    std::string s(static_cast<std::size_t>(len(rng)), ' ');
    for (char& c : s) {
        c = static_cast<char>(byte(rng));
        if (c == '\n') c = ' ';
    }
    return s;
}

TEST(CatalogRobustness, RandomAndMutatedLines) {
    std::mt19937 rng(20240521);
    std::vector<std::string> saiSeeds = {
        saiRow({"2014dm", "NGC1516A", "", "2014-09-27", "Ia", "04 08 07.13", "- 8 49 37.0"}),
        saiRow({"1946B", "NGC4632", "1946-01-01", "", "II:", "12 42 33.41", "- 0 04 47.5"}),
        saiRow({"2011dh", "NGC5194", "2011-05-31", "2011-05-31", "IIb", "13 30 05.12", "+47 10 11.6"})};
    for (auto& s : saiSeeds) s.pop_back();
    const std::vector<std::string> csvSeeds = {
        "2014dm,62.0297,-8.8269,2014-09-27,Ia,NGC1516A", "\"a, b\",04:08:07.13,- 8 49 37.0,56927,II,",
        "x,12 00 00,+45 00 00,-,NA,\"h\"\"ost\""};

    std::size_t totalRows = 0, totalKept = 0;
    for (int round = 0; round < 6; ++round) {
        const bool sai = round % 2 == 0;
        std::string text = sai ? saiHeader() : "name,ra,dec,date,type,host\n";
        const auto& seeds = sai ? saiSeeds : csvSeeds;
        for (int i = 0; i < 1500; ++i) {
            const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
            const std::string& seed = seeds[static_cast<std::size_t>(i) % seeds.size()];
            if (kind < 3)
                text += seed;
            else if (kind < 9)
                text += mutate(seed, rng);
            else
                text += randomLine(rng);
            text += (i % 7 == 0) ? "\r\n" : "\n";
        }
        CatalogFilter filter;
        if (round >= 2) filter.minYear = 2000;
        if (round >= 4) filter.types = {"I"}, filter.limit = 100;
        CatalogReport r;
        ASSERT_NO_THROW(r = parseText(text, CatalogFormat::Auto, filter)) << "round " << round;
        EXPECT_EQ(r.format, sai ? CatalogFormat::Sai : CatalogFormat::Csv);
        EXPECT_GT(r.targets.size(), 0u);
        EXPECT_GT(r.rejected.size(), 0u);
        totalRows += r.dataRows;
        totalKept += r.targets.size();
    }
    EXPECT_GT(totalRows, 6000u);  // of 9000 lines; mutation makes some blank or comments
    EXPECT_GT(totalKept, 100u);

    // Whole random files: either a header error or a full accounting, nothing else.
    for (int f = 0; f < 300; ++f) {
        std::string text;
        const int n = std::uniform_int_distribution<int>(0, 30)(rng);
        for (int i = 0; i < n; ++i) {
            const int kind = std::uniform_int_distribution<int>(0, 3)(rng);
            if (kind == 0 && i == 0) text += (f % 2 ? saiHeader() : "name;ra;dec\n");
            text += kind == 1 ? mutate(saiSeeds[0], rng) : kind == 2 ? mutate(csvSeeds[1], rng) : randomLine(rng);
            text += '\n';
        }
        for (auto fmt : {CatalogFormat::Auto, CatalogFormat::Sai, CatalogFormat::Csv}) {
            try {
                parseText(text, fmt);
            } catch (const CatalogError&) {
                // a file with no recognisable header: allowed
            }
        }
    }
}

}  // namespace
}  // namespace astrid::catalog

TEST(CatalogSlice, BlocksPartitionTheListInOrder) {
    for (std::size_t n : {0u, 1u, 7u, 100u, 101u}) {
        std::vector<astrid::catalog::Target> all(n);
        for (std::size_t i = 0; i < n; ++i) all[i].id = static_cast<std::int64_t>(i) * 3;  // ids with gaps
        for (std::size_t count : {1u, 2u, 3u, 8u, 150u}) {
            std::vector<std::int64_t> joined;
            std::size_t smallest = n, largest = 0;
            for (std::size_t i = 0; i < count; ++i) {
                const auto part = astrid::catalog::sliceTargets(all, {i, count});
                smallest = std::min(smallest, part.size());
                largest = std::max(largest, part.size());
                for (const auto& t : part) joined.push_back(t.id);
            }
            ASSERT_EQ(joined.size(), n) << n << " in " << count;
            for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(joined[i], all[i].id);  // contiguous, in order, no overlap
            EXPECT_LE(largest - std::min(smallest, largest), 1u) << n << " in " << count;
        }
    }
    std::vector<astrid::catalog::Target> ten(10);
    for (int i = 0; i < 10; ++i) ten[static_cast<std::size_t>(i)].id = i;
    const auto third = astrid::catalog::sliceTargets(ten, {2, 3});  // [floor(20/3), 10) = [6, 10)
    ASSERT_EQ(third.size(), 4u);
    EXPECT_EQ(third.front().id, 6);
    EXPECT_THROW(astrid::catalog::sliceTargets(ten, {3, 3}), astrid::DataError);
    EXPECT_THROW(astrid::catalog::sliceTargets(ten, {0, 0}), astrid::DataError);
}

using namespace astrid;

// Source catalogs (job keys source_catalog / reference_catalog): columns by name, clear errors.
namespace {
std::string writeSourceCsv(const std::string& name, const std::string& text) {
    const auto p = std::filesystem::temp_directory_path() / ("astrid_src_" + std::to_string(::getpid()) + "_" + name);
    std::ofstream(p) << text;
    return p.string();
}
}  // namespace

TEST(SourceCatalog, ColumnsByNameIdsAndMagnitudes) {
    const auto p = writeSourceCsv("ok.csv", "# comment\nMAG,Dec,RA,id,extra\n20.5, -3.5, 338.4, 7, x\n\n,10,20,9,y\n");
    const auto s = catalog::readSourceCatalog(p);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].id, 7);
    EXPECT_DOUBLE_EQ(s[0].raDeg, 338.4);
    EXPECT_DOUBLE_EQ(s[0].decDeg, -3.5);
    EXPECT_DOUBLE_EQ(s[0].mag, 20.5);
    EXPECT_TRUE(std::isnan(s[1].mag));
    try {  // a reference catalog needs every magnitude
        (void)catalog::readSourceCatalog(p, true);
        FAIL();
    } catch (const CatalogError& e) {
        EXPECT_EQ(e.line(), 5);
        EXPECT_NE(std::string(e.what()).find("no magnitude"), std::string::npos);
    }
    std::filesystem::remove(p);
}

TEST(SourceCatalog, BadRowsAreErrorsNamingFileAndLine) {
    auto expectError = [](const std::string& name, const std::string& text, long line, const std::string& what) {
        const auto p = writeSourceCsv(name, text);
        try {
            (void)catalog::readSourceCatalog(p);
            ADD_FAILURE() << name << " was accepted";
        } catch (const CatalogError& e) {
            EXPECT_EQ(e.line(), line) << e.what();
            EXPECT_EQ(e.file(), p);
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
        std::filesystem::remove(p);
    };
    expectError("nocol.csv", "id,x,y\n1,2,3\n", 1, "no ra and dec");
    expectError("badnum.csv", "ra,dec\n10,20\n10,abc\n", 3, "dec 'abc'");
    expectError("range.csv", "ra,dec\n400,20\n", 2, "outside");
    expectError("dup.csv", "id,ra,dec\n1,10,20\n1,11,21\n", 3, "duplicate id 1");
    expectError("fields.csv", "ra,dec,mag\n10,20\n", 2, "2 fields");
    EXPECT_THROW((void)catalog::readSourceCatalog("/nonexistent/x.csv"), CatalogError);
}

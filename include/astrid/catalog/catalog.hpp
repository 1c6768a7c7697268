#pragma once
// Supernova target catalogs: the SAI sncat layout (a psql '|' table) and CSV exports.
//
// Reading never drops a row silently: every non-blank, non-comment data row ends up as exactly one
// kept Target, one Rejection (could not be parsed; category + detail) or one Exclusion (parsed but
// removed by a CatalogFilter), so dataRows == targets + rejected + excluded always holds.
//
// Conventions: sky positions are ICRS degrees (ra in [0, 360), dec in [-90, 90]); dates are MJD
// (UTC, proleptic Gregorian also before 1582: the historical SNe 1006/1054/1572 of the SAI file
// are Julian-calendar dates read as Gregorian, a few days off, which no stage here cares about);
// line numbers are 1-based physical lines of the file.
//
// Dates (both formats):
//   - "YYYY-MM-DD", optionally with a time ("THH:MM:SS[.sss]" or " HH:MM:SS"), or "YYYY/MM/DD".
//   - Partial dates "YYYY", "YYYY-MM", "YYYY-MM-00", "YYYY-00-00" are kept and dated at the start of
//     the period, with Target::discPrecision saying so and CatalogReport::partialDateRows counting
//     them (the real SAI file has none; other extracts and hand-made lists may). A day without a month
//     ("YYYY-00-15") or an impossible date ("2014-02-30") rejects the row as "bad date".
//   - CSV only: plain numbers. In a column whose name contains "mjd" any finite number in
//     (-1e6, 1e6) is an MJD. In another date column a number in [10000, 100000) is an MJD, one in
//     [2400000, 2500000) a JD (converted); anything else is "bad date".
// A present but unparsable max_date rejects the row even when disc_date is fine: a value we cannot
// read is reported, not ignored.
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace astrid::catalog {

/// How precisely discMjd is known; partial catalogue dates are dated at the start of the period.
enum class DatePrecision { Day, Month, Year };

/// One supernova (or any transient) to observe.
struct Target {
    std::int64_t id = -1;            ///< 0-based ordinal of the data row in the file; stable under filters,
                                     ///< so rejected rows leave gaps in the id sequence
    std::string name;                ///< e.g. "2014dm"; never empty
    double raDeg = 0, decDeg = 0;    ///< ICRS degrees, ra in [0, 360), dec in [-90, 90]
    std::optional<double> discMjd;   ///< discovery date (MJD); SAI/CSV fall back to max date when empty
    std::optional<double> maxMjd;    ///< date of maximum light (MJD)
    std::string type;                ///< "Ia", "II:", "IaPec"...; may be empty
    std::string host;                ///< host galaxy (SAI gal_name); may be empty
    long line = 0;                   ///< 1-based line in the file
    bool discDateFromMax = false;    ///< true when discMjd was taken from the max date
    DatePrecision discPrecision = DatePrecision::Day;  ///< meaningful only when discMjd is set
};

/// Input layouts. Auto: SAI when the first non-blank line contains '|' and one of the next few
/// non-blank lines is a psql separator ("----+----"); CSV otherwise.
enum class CatalogFormat { Auto, Sai, Csv };

/// A data row that could not be parsed.
struct Rejection {
    long line = 0;         ///< 1-based line in the file
    std::string category;  ///< short stable phrase for counting: "bad ra", "bad dec", "missing ra",
                           ///< "missing dec", "missing name", "bad date", "wrong column count", "bad quoting"
    std::string detail;    ///< names the field and its value, and why it failed
};

/// A parsed target that a CatalogFilter left out.
struct Exclusion {
    std::int64_t targetId = -1;
    long line = 0;
    std::string reason;  ///< stable per filter: "no discovery date (min-year filter)", "discovered before
                         ///< <year>", "type not selected", "beyond limit"
    std::string name;    ///< the excluded target's name
};

/// Which parsed targets to keep. Applied in this order, the first failing test naming the reason:
///   minYear: keep when the discovery year (civil, from discMjd, which may come from the max date)
///            is >= minYear; targets without any date are excluded.
///   types:   when non-empty, keep when the type starts with any listed prefix, case-sensitively,
///            because the case of SN type codes carries meaning (the "n" of "IIn" is "narrow lines",
///            "IIN" is not a type). Prefix semantics: "Ia" keeps "Ia", "IaPec", "Ia:", "Ia?";
///            "II" keeps "IIP", "IIn", "IIb"; "I" keeps every type starting with I (including II);
///            an empty prefix keeps everything. A target with an empty type matches only "".
///   limit:   applied last, in file order: the first `limit` survivors are kept.
struct CatalogFilter {
    std::optional<int> minYear;
    std::optional<std::size_t> limit;
    std::vector<std::string> types;
};

/// One of `count` contiguous blocks of a target list: a job-array slice (job key `slice = i/N`).
struct Slice {
    std::size_t index = 0;  ///< 0-based, < count
    std::size_t count = 1;
};

/// The targets of block `slice.index` of `slice.count`: [floor(i n / N), floor((i + 1) n / N)) of
/// the n targets, in order. The blocks of 0..N-1 partition the list and differ in size by at most
/// one; when N > n some are empty. Throws DataError when count is 0 or index >= count.
std::vector<Target> sliceTargets(const std::vector<Target>& targets, Slice slice);

/// Everything a read produced. format is the resolved layout (Sai or Csv, never Auto).
struct CatalogReport {
    std::string file;
    CatalogFormat format = CatalogFormat::Auto;
    std::size_t dataRows = 0;            ///< non-blank, non-comment data rows seen (SAI: separator and
                                         ///< psql footer "(N rows)" lines are not data rows)
    std::vector<Target> targets;         ///< parsed and kept, in file order
    std::vector<Rejection> rejected;     ///< could not be parsed, in file order
    std::vector<Exclusion> excluded;     ///< parsed but filtered out, in file order
    std::size_t partialDateRows = 0;     ///< parsed rows (kept or excluded) whose discMjd is a partial date

    /// Number of rejections per category.
    std::map<std::string, std::size_t> rejectionCounts() const;
    /// Number of exclusions per reason.
    std::map<std::string, std::size_t> exclusionCounts() const;
};

/// Reads a catalog file. `format` Auto detects the layout (see CatalogFormat).
/// Throws CatalogError naming `path` when the file cannot be opened or read, is a directory, or has
/// no recognisable header (SAI: '|'-separated names including sn_name, sn_ra, sn_dec; CSV: a name,
/// an RA and a Dec column under one of the accepted aliases). Bad rows never throw; they are
/// reported in CatalogReport::rejected.
CatalogReport readCatalog(const std::string& path, CatalogFormat format = CatalogFormat::Auto,
                          const CatalogFilter& filter = {});

/// As readCatalog, from a stream; `fileName` is used only for the report and error messages.
/// Lines may end in LF or CRLF; a UTF-8 byte-order mark at the start is ignored.
/// Throws CatalogError (whole-stream failures only, as readCatalog).
CatalogReport parseCatalog(std::istream& in, const std::string& fileName, CatalogFormat format = CatalogFormat::Auto,
                           const CatalogFilter& filter = {});

/// Writes targets as CSV with LF line ends and the header id,name,ra_deg,dec_deg,disc_mjd,type.
/// ra/dec in degrees with 8 decimals (36 microarcsec), disc_mjd with 6 decimals (0.09 s) or empty
/// when missing. Fields containing ',', '"', CR, LF or leading/trailing blanks are quoted per
/// RFC 4180 ('"' doubled). parseCatalog reads the output back (the name column wins over id).
/// Throws nothing itself; stream errors are left in the stream state.
void writeTargetsCsv(std::ostream& out, const std::vector<Target>& targets);

/// Writes targets in the SAI sncat layout: the 33-column header of the real file, a psql separator,
/// one row per target filling sn_name, gal_name, max_date, disc_date, sn_type, sn_ra, sn_dec (the
/// sign detached when |dec| < 10 deg, as SAI does). RA is written as "HH MM SS.ssss" and Dec as
/// "+DD MM SS.sss" (finer than SAI's own 0.01 s / 0.1", so the round trip is good to ~2 mas);
/// day-integral MJDs are written as YYYY-MM-DD and read back exactly, others as
/// YYYY-MM-DDTHH:MM:SS.sss (1 ms). When discDateFromMax is set, disc_date is left empty so that
/// reading back reproduces the fallback. Text fields are written trimmed.
/// Throws DataError when a target cannot be represented: empty name, a '|' or line break in a text
/// field, a non-finite or out-of-range position or date.
void writeSaiCatalog(std::ostream& out, const std::vector<Target>& targets);

/// "auto", "sai" or "csv".
std::string formatName(CatalogFormat format);
/// Inverse of formatName, case-insensitive; nullopt for anything else.
std::optional<CatalogFormat> formatFromName(std::string_view name);

}  // namespace astrid::catalog

// The query's pairing rules and footprint coverage, on hand-made observation lists.
#include <gtest/gtest.h>

#include "astrid/archive/query.hpp"

namespace astrid::archive {
namespace {

std::string square(double ra, double dec, double half) {
    return "POLYGON ICRS " + std::to_string(ra - half) + " " + std::to_string(dec - half) + " " +
           std::to_string(ra + half) + " " + std::to_string(dec - half) + " " + std::to_string(ra + half) + " " +
           std::to_string(dec + half) + " " + std::to_string(ra - half) + " " + std::to_string(dec + half);
}

RemoteObservation obs(const std::string& id, double mjd, const std::string& mission = "HST",
                      const std::string& filter = "F814W", double raOffset = 0) {
    RemoteObservation o;
    o.archive = "mast";
    o.obsid = id;
    o.collection = mission;
    o.instrument = "ACS/WFC";
    o.filter = filter;
    o.tMinMjd = mjd;
    o.tMaxMjd = mjd + 0.01;
    o.exposureS = 600;
    o.sRegion = square(150.0 + raOffset, 2.0, 0.05);
    o.calibLevel = 2;
    RemoteProduct p;
    p.product.filename = id + "_flt.fits";
    p.product.uri = "mast:HST/product/" + p.product.filename;
    p.product.url = "https://example.invalid/" + p.product.filename;
    p.product.size = 1000;
    p.productType = "SCIENCE";
    p.calibLevel = 2;
    o.products.push_back(p);
    RemoteProduct preview = p;
    preview.product.filename = id + ".jpg";
    preview.productType = "PREVIEW";
    o.products.push_back(preview);
    return o;
}

catalog::Target target() {
    catalog::Target t;
    t.id = 7;
    t.name = "2020abc";
    t.raDeg = 150.0;
    t.decDeg = 2.0;
    t.discMjd = 59000.0;
    return t;
}

TEST(Footprint, CoverageOfShiftedSquares) {
    EXPECT_NEAR(*footprintCoverage(square(150, 2, 0.05), square(150, 2, 0.05)), 1.0, 1e-9);
    EXPECT_NEAR(*footprintCoverage(square(150, 2, 0.05), square(150.05 / 1.0, 2, 0.05)), 0.5, 0.01);
    EXPECT_NEAR(*footprintCoverage(square(150, 2, 0.05), square(151, 2, 0.05)), 0.0, 1e-9);
    EXPECT_NEAR(*footprintCoverage(square(150, 2, 0.05), "CIRCLE ICRS 150 2 1"), 1.0, 1e-9);
    EXPECT_FALSE(footprintCoverage("", square(150, 2, 0.05)));
    EXPECT_FALSE(footprintCoverage("POLYGON 1 2 3", square(150, 2, 0.05)));
}

TEST(Pairing, ReferenceBeforeScienceAfterSameMissionAndFilter) {
    QueryConfig c;
    const auto plan = pairTarget(target(), {obs("r1", 58800), obs("s1", 59010), obs("s2", 59020), obs("late", 59500)}, c);
    ASSERT_EQ(plan.status, PlanStatus::Paired) << plan.reason;
    ASSERT_EQ(plan.observations.size(), 3u);
    EXPECT_EQ(plan.observations[0].obsid, "r1");
    EXPECT_EQ(plan.observations[0].role, Role::Reference);
    EXPECT_EQ(plan.observations[1].obsid, "s1");
    EXPECT_EQ(plan.observations[2].obsid, "s2");
    for (const auto& o : plan.observations) ASSERT_EQ(o.products.size(), 1u) << "previews are not images";
    EXPECT_EQ(plan.mission, "HST");
    EXPECT_EQ(plan.filter, "F814W");
}

TEST(Pairing, TheDayBeforeDiscoveryIsNotAReference) {
    const auto plan = pairTarget(target(), {obs("r1", 58999.5), obs("s1", 59010)}, QueryConfig{});
    EXPECT_EQ(plan.status, PlanStatus::Unpaired);
    EXPECT_NE(plan.reason.find("no reference epoch"), std::string::npos) << plan.reason;
}

TEST(Pairing, CrossMissionPairsAreRefused) {
    const auto plan = pairTarget(target(), {obs("r1", 58800, "PS1", "r"), obs("s1", 59010, "HST", "F814W")}, QueryConfig{});
    EXPECT_EQ(plan.status, PlanStatus::Unpaired);
    EXPECT_NE(plan.reason.find("never in the same mission and filter"), std::string::npos) << plan.reason;
    EXPECT_NE(plan.reason.find("PS1/ACS/WFC/r x1"), std::string::npos) << plan.reason;
}

TEST(Pairing, MinimumOverlap) {
    // The reference is shifted by 40% of the footprint: 60% coverage.
    auto plan = pairTarget(target(), {obs("r1", 58800, "HST", "F814W", 0.04), obs("s1", 59010)}, QueryConfig{});
    EXPECT_EQ(plan.status, PlanStatus::Unpaired);
    EXPECT_NE(plan.reason.find("no reference covers 85%"), std::string::npos) << plan.reason;
    EXPECT_NE(plan.reason.find("best 60%"), std::string::npos) << plan.reason;
    QueryConfig c;
    c.minOverlap = 0.5;
    plan = pairTarget(target(), {obs("r1", 58800, "HST", "F814W", 0.04), obs("s1", 59010)}, c);
    EXPECT_EQ(plan.status, PlanStatus::Paired) << plan.reason;
    EXPECT_NEAR(plan.observations.at(1).overlap, 0.6, 0.01);
}

TEST(Pairing, MaximaAndTheBestGroup) {
    QueryConfig c;
    c.maxScience = 2;
    // F606W has one science epoch, F814W three: F814W wins, cut to the two earliest.
    const auto plan = pairTarget(target(),
                                 {obs("a", 58800, "HST", "F606W"), obs("b", 59005, "HST", "F606W"), obs("r1", 58700),
                                  obs("r2", 58900), obs("s3", 59030), obs("s1", 59010), obs("s2", 59020)},
                                 c);
    ASSERT_EQ(plan.status, PlanStatus::Paired) << plan.reason;
    EXPECT_EQ(plan.filter, "F814W");
    ASSERT_EQ(plan.observations.size(), 3u);  // max_reference 1
    EXPECT_EQ(plan.observations[1].obsid, "s1");
    EXPECT_EQ(plan.observations[2].obsid, "s2");
}

TEST(Pairing, ProductSelectionAndReasons) {
    auto noScience = obs("s1", 59010);
    noScience.products.erase(noScience.products.begin());  // only the preview is left
    auto unsafe = obs("s2", 59020);
    unsafe.products[0].product.filename = "../s2_flt.fits";
    auto big = obs("s3", 59030);
    big.products[0].product.size = 10LL << 30;
    const auto plan = pairTarget(target(), {obs("r1", 58800), noScience, unsafe, big}, QueryConfig{});
    EXPECT_EQ(plan.status, PlanStatus::Unpaired);
    EXPECT_NE(plan.reason.find("3 observation(s) without a usable science product"), std::string::npos) << plan.reason;
    EXPECT_NE(plan.reason.find("1 product(s) with unsafe file names refused"), std::string::npos) << plan.reason;
    EXPECT_NE(plan.reason.find("no science epoch"), std::string::npos) << plan.reason;
}

TEST(Pairing, NoDateNoObservations) {
    auto t = target();
    t.discMjd.reset();
    EXPECT_EQ(pairTarget(t, {obs("r1", 58800)}, QueryConfig{}).reason, "no discovery date");
    const auto plan = pairTarget(target(), {}, QueryConfig{});
    EXPECT_NE(plan.reason.find("no image observations"), std::string::npos) << plan.reason;
}

TEST(Pairing, RequireBothOff) {
    QueryConfig c;
    c.requireBoth = false;
    const auto plan = pairTarget(target(), {obs("s1", 59010)}, c);
    EXPECT_EQ(plan.status, PlanStatus::Paired) << plan.reason;
    EXPECT_EQ(plan.observations.size(), 1u);
}

}  // namespace
}  // namespace astrid::archive

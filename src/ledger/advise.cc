// Advise: sums the intervals into what the machine did (Observe), applies one small function
// per rule, and renders the result as text or JSON. Money stays in micro-dollars; ratios are
// doubles only for display.
#include "ledger/advise.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "common/json_text.h"
#include "common/log.h"
#include "common/toml_reader.h"

namespace ember::ledger {
namespace {

using toml::Node;

constexpr std::int64_t kNsPerSecond = 1'000'000'000;
constexpr std::int64_t kNsPerHour = 3'600 * kNsPerSecond;
constexpr std::int64_t kNsPerMonth = kHoursPerMonth * kNsPerHour;
constexpr std::int64_t kSlowQueueNs = kNsPerSecond;
// Intervals at most this far apart still make one idle stretch (sampling jitter).
constexpr std::int64_t kContiguousNs = kNsPerSecond;

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
std::string Percent(double fraction) { return StrCat(Fixed(fraction * 100, 1), "%"); }
std::string Dollars(Microdollars m) { return StrCat("$", FormatDollars(m)); }
std::string Seconds(std::int64_t ns) {
  return StrCat(Fixed(static_cast<double>(ns) / kNsPerSecond, 2), " s");
}
std::string Span(std::int64_t ns) {
  const double hours = static_cast<double>(ns) / kNsPerHour;
  if (hours >= 48) return StrCat(Fixed(hours / 24, 1), " days");
  if (hours >= 1) return StrCat(Fixed(hours, 1), " h");
  return StrCat(Fixed(hours * 60, 0), " min");
}
double Ratio(std::int64_t a, std::int64_t b) {
  return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

// ---- instances.toml ----

using toml::ErrorAt;

// One [[instance]] table.
Result<InstanceOffer> ParseOffer(const Node& table, std::string_view file) {
  constexpr std::string_view kRequired[] = {"name", "vcpus", "memory_gib", "price_per_hour"};
  InstanceOffer offer;
  for (const auto& [key, v] : table.table) {
    if (key == "name") {
      if (!v->is_string() || v->string.empty()) return ErrorAt(file, *v, "name must be a string");
      offer.name = v->string;
    } else if (key == "vcpus" || key == "memory_gib") {
      if (!v->is_integer() || v->integer <= 0) {
        return ErrorAt(file, *v, StrCat(key, " must be a positive integer"));
      }
      (key == "vcpus" ? offer.vcpus : offer.memory_gib) = v->integer;
    } else if (key == "price_per_hour" || key == "spot_price_per_hour") {
      auto money = toml::Dollars(file, *v, key);
      if (!money) return std::unexpected(money.error());
      if (key == "price_per_hour") {
        offer.price_per_hour = *money;
      } else {
        offer.spot_price_per_hour = *money;
      }
    } else {
      constexpr std::string_view kKeys[] = {"name", "vcpus", "memory_gib", "price_per_hour",
                                            "spot_price_per_hour"};
      return std::unexpected(toml::CheckKey(file, key, *v, "in [[instance]]", kKeys).error());
    }
  }
  for (std::string_view key : kRequired) {
    if (!table.Find(key)) return ErrorAt(file, table, StrCat("[[instance]] needs ", key));
  }
  return offer;
}

Result<std::vector<InstanceOffer>> ParseOffers(const Node& root, std::string_view file) {
  for (const auto& [key, value] : root.table) {
    if (key != "instance") {
      return ErrorAt(file, *value,
                     StrCat("unknown key \"", key,
                            "\" at the top level (allowed: instance, as [[instance]])"));
    }
    if (!value->is_array()) return ErrorAt(file, *value, "write each instance as [[instance]]");
  }
  std::vector<InstanceOffer> offers;
  const Node* list = root.Find("instance");
  if (!list) return offers;
  std::set<std::string> names;
  for (const auto& table : list->array) {
    auto offer = ParseOffer(*table, file);
    if (!offer) return std::unexpected(offer.error());
    if (!names.insert(offer->name).second) {
      return ErrorAt(file, *table, StrCat("instance \"", offer->name, "\" is listed twice"));
    }
    offers.push_back(*std::move(offer));
  }
  return offers;
}

// ---- what the machine did ----

struct Observed {
  std::int64_t wall_ns = 0, busy_ns = 0, cold_ns = 0, idle_ns = 0;
  Microdollars cost = 0, idle_cost = 0;
  std::int64_t long_idle_ns = 0, long_stretches = 0, longest_idle_ns = 0;
  Microdollars long_idle_cost = 0;
  Microdollars last_price = 0;
  std::int64_t last_threads = 0;

  double utilization() const { return Ratio(busy_ns, wall_ns); }
  Microdollars Monthly(Microdollars amount) const {
    return wall_ns > 0 ? MulDivRound(amount, kNsPerMonth, wall_ns) : 0;
  }
};

Observed Observe(const AdviseInput& in) {
  std::vector<const UsageInterval*> sorted;
  for (const UsageInterval& iv : in.intervals) sorted.push_back(&iv);
  std::sort(sorted.begin(), sorted.end(),
            [](const auto* a, const auto* b) { return a->start_ns < b->start_ns; });
  Observed o;
  std::int64_t run_ns = 0, prev_end = 0;
  Microdollars run_cost = 0;
  auto end_run = [&] {
    if (run_ns >= in.long_idle_ns && run_ns > 0) {
      o.long_idle_ns += run_ns;
      o.long_idle_cost += run_cost;
      ++o.long_stretches;
      o.longest_idle_ns = std::max(o.longest_idle_ns, run_ns);
    }
    run_ns = 0;
    run_cost = 0;
  };
  for (const UsageInterval* iv : sorted) {
    o.wall_ns += std::max<std::int64_t>(iv->end_ns - iv->start_ns, 0);
    o.busy_ns += iv->busy_ns;
    o.cold_ns += iv->cold_start_ns;
    o.idle_ns += iv->idle_ns;
    o.cost += iv->busy_cost + iv->cold_start_cost + iv->idle_cost;
    o.idle_cost += iv->idle_cost;
    o.last_price = iv->price_per_hour;
    o.last_threads = iv->threads;
    if (run_ns > 0 && iv->start_ns - prev_end > kContiguousNs) end_run();
    if (iv->busy_ns == 0 && iv->cold_start_ns == 0) {
      run_ns += iv->idle_ns;
      run_cost += iv->idle_cost;
    } else {
      end_run();
    }
    prev_end = iv->end_ns;
  }
  end_run();
  return o;
}

// The machine in use, as the rules see it.
struct Current {
  const InstanceOffer* offer = nullptr;  // its row in the user's table, if named there
  std::string name;
  Microdollars price = 0;  // per hour, as paid
  std::int64_t vcpus = 0;  // from the table, else the engine threads
  std::int64_t threads = 0;
  bool spot = false;
};

Current CurrentOf(const AdviseInput& in, const Observed& o) {
  Current c;
  c.name = in.prices.instance.name.empty() ? "the current instance" : in.prices.instance.name;
  c.price =
      in.prices.instance.price_per_hour > 0 ? in.prices.instance.price_per_hour : o.last_price;
  c.spot = in.prices.instance.spot;
  c.threads = in.threads > 0 ? in.threads : o.last_threads;
  for (const InstanceOffer& offer : in.offers) {
    if (!in.prices.instance.name.empty() && offer.name == in.prices.instance.name) c.offer = &offer;
  }
  c.vcpus = c.offer ? c.offer->vcpus : c.threads;
  return c;
}

// For a name that starts a sentence ("the current instance").
std::string Capitalized(std::string name) {
  if (!name.empty() && name[0] >= 'a' && name[0] <= 'z' && name.starts_with("the ")) {
    name[0] = static_cast<char>(name[0] - 'a' + 'A');
  }
  return name;
}

// What an offer would cost on the same kind of pricing as now.
Microdollars OfferPrice(const InstanceOffer& offer, bool spot) {
  return spot && offer.spot_price_per_hour ? *offer.spot_price_per_hour : offer.price_per_hour;
}

std::string Described(const Current& c) {
  return c.offer ? StrCat(c.name, " (", c.vcpus, " vCPUs, ", Dollars(c.price), "/h)")
                 : StrCat(c.name, " (", Dollars(c.price), "/h; ", c.vcpus,
                          " vCPUs assumed from --threads, not found in the instance table)");
}

std::string Effect(Microdollars monthly) {
  if (monthly >= 0) return StrCat("saves ", Dollars(monthly), " a month (730 h)");
  return StrCat("costs ", Dollars(-monthly), " more a month (730 h)");
}

using Rule = std::optional<Recommendation> (*)(const AdviseInput&, const Observed&, const Current&);

std::optional<Recommendation> IdleRule(const AdviseInput& in, const Observed& o, const Current& c) {
  const double idle = Ratio(o.idle_ns, o.wall_ns);
  if (idle < 0.5 || in.idle_unload_enabled || o.long_idle_ns == 0) return std::nullopt;
  const Microdollars saving = o.Monthly(o.long_idle_cost);
  return Recommendation{
      .kind = "idle_unload",
      .text =
          StrCat(Capitalized(c.name), " was idle ", Percent(idle), " of the ", Span(o.wall_ns),
                 " recorded (busy ", Percent(o.utilization()), ", loading models ",
                 Percent(Ratio(o.cold_ns, o.wall_ns)), "); idle time cost ", Dollars(o.idle_cost),
                 ". ", Percent(Ratio(o.long_idle_ns, o.idle_ns)), " of it came in ",
                 o.long_stretches, o.long_stretches == 1 ? " stretch" : " stretches", " of ",
                 Span(in.long_idle_ns), " or more without any engine work (the longest ",
                 Span(o.longest_idle_ns), "), which cost ", Dollars(o.long_idle_cost),
                 ". Scaling to zero in those stretches (--idle-unload to free the model, and a "
                 "platform that stops the idle machine) ",
                 Effect(saving),
                 " at this rate; the first request after each stretch waits for a cold "
                 "start."),
      .monthly_saving = saving,
      .numbers = {{"idle_fraction", idle},
                  {"long_idle_fraction", Ratio(o.long_idle_ns, o.idle_ns)},
                  {"long_idle_stretches", static_cast<double>(o.long_stretches)}}};
}

std::optional<Recommendation> SmallerRule(const AdviseInput& in, const Observed& o,
                                          const Current& c) {
  const double util = o.utilization();
  if (util >= 0.30 || c.price <= 0 || c.vcpus <= 0) return std::nullopt;
  const InstanceOffer* best = nullptr;
  for (const InstanceOffer& offer : in.offers) {
    if (&offer == c.offer || offer.vcpus * 2 < c.vcpus) continue;
    const Microdollars p = OfferPrice(offer, c.spot);
    if (p >= c.price) continue;
    if (!best || p < OfferPrice(*best, c.spot) ||
        (p == OfferPrice(*best, c.spot) && offer.vcpus > best->vcpus)) {
      best = &offer;
    }
  }
  if (!best) return std::nullopt;
  const Microdollars p = OfferPrice(*best, c.spot);
  const Microdollars saving = (c.price - p) * kHoursPerMonth;
  const double projected = util * static_cast<double>(c.vcpus) / static_cast<double>(best->vcpus);
  return Recommendation{
      .kind = "smaller_instance",
      .text = StrCat("The machine was busy ", Percent(util), " of the ", Span(o.wall_ns),
                     " recorded on ", Described(c), ". ", best->name, " has ", best->vcpus,
                     " vCPUs and ", best->memory_gib, " GiB for ", Dollars(p),
                     "/h: the same work would keep it about ", Percent(projected),
                     " busy if speed scales with vCPUs, and it ", Effect(saving),
                     ". Check that your models fit in ", best->memory_gib,
                     " GiB and set --threads to at most ", best->vcpus, "."),
      .monthly_saving = saving,
      .numbers = {{"projected_utilization", projected},
                  {"offer_vcpus", static_cast<double>(best->vcpus)}}};
}

std::optional<Recommendation> LargerRule(const AdviseInput& in, const Observed& o,
                                         const Current& c) {
  const double util = o.utilization();
  const bool slow_queue = in.queue_ns_p95 > kSlowQueueNs;
  if (!slow_queue && util <= 0.85) return std::nullopt;
  std::string why =
      slow_queue ? StrCat("Requests waited ", Seconds(in.queue_ns_p95), " at p95 for a slot (p50 ",
                          Seconds(in.queue_ns_p50), ") and the machine was busy ", Percent(util))
                 : StrCat("The machine was busy ", Percent(util), " of the time (queue p95 ",
                          Seconds(in.queue_ns_p95), ")");
  const InstanceOffer* best = nullptr;
  for (const InstanceOffer& offer : in.offers) {
    if (offer.vcpus <= c.vcpus) continue;
    const Microdollars p = OfferPrice(offer, c.spot);
    if (!best || p < OfferPrice(*best, c.spot) ||
        (p == OfferPrice(*best, c.spot) && offer.vcpus > best->vcpus)) {
      best = &offer;
    }
  }
  if (best && c.vcpus > 0) {
    const Microdollars p = OfferPrice(*best, c.spot);
    const Microdollars saving = (c.price - p) * kHoursPerMonth;
    const double projected = util * static_cast<double>(c.vcpus) / static_cast<double>(best->vcpus);
    return Recommendation{
        .kind = "larger_instance",
        .text =
            StrCat(why, " on ", Described(c), ". ", best->name, " has ", best->vcpus, " vCPUs for ",
                   Dollars(p), "/h: the same work would keep it about ", Percent(projected),
                   " busy if speed scales with vCPUs, shortening the "
                   "queue; it ",
                   Effect(saving), "."),
        .monthly_saving = saving,
        .numbers = {{"projected_utilization", projected},
                    {"offer_vcpus", static_cast<double>(best->vcpus)}}};
  }
  const int replicas = std::max(in.replicas, 1);
  const Microdollars saving = -c.price * kHoursPerMonth;
  const double projected = util * replicas / (replicas + 1);
  return Recommendation{.kind = "replicas",
                        .text = StrCat(why, " on ", Described(c),
                                       ", and no larger instance is in the table. "
                                       "Going from ",
                                       replicas, " to ", replicas + 1,
                                       " replicas would leave each "
                                       "about ",
                                       Percent(projected), " busy; one more ", Effect(saving), "."),
                        .monthly_saving = saving,
                        .numbers = {{"projected_utilization", projected}}};
}

std::optional<Recommendation> SpotRule(const AdviseInput& in, const Observed&, const Current& c) {
  if (c.spot || !c.offer || !c.offer->spot_price_per_hour || in.requests == 0) return std::nullopt;
  const Microdollars spot = *c.offer->spot_price_per_hour;
  if (spot >= c.price || in.latency_ns_p95 > in.drain_timeout_ns) return std::nullopt;
  const Microdollars saving = (c.price - spot) * kHoursPerMonth;
  return Recommendation{
      .kind = "spot",
      .text = StrCat(Capitalized(c.name), " runs on-demand at ", Dollars(c.price),
                     "/h; its spot price in "
                     "the instance table is ",
                     Dollars(spot), "/h, which ", Effect(saving),
                     ". A spot machine can be reclaimed at short notice (2 minutes on AWS, 30 s "
                     "on GCP). 95% of the ",
                     in.requests, " requests finished within ", Seconds(in.latency_ns_p95),
                     ", inside the ", Seconds(in.drain_timeout_ns),
                     " drain timeout, so draining on the notice lets requests in flight finish; "
                     "new requests need another replica or a client retry while the machine is "
                     "replaced."),
      .monthly_saving = saving,
      .numbers = {{"latency_p95_seconds", Ratio(in.latency_ns_p95, kNsPerSecond)}}};
}

std::optional<Recommendation> ThreadsRule(const AdviseInput&, const Observed&, const Current& c) {
  if (!c.offer || c.threads <= c.offer->vcpus) return std::nullopt;
  return Recommendation{
      .kind = "threads",
      .text = StrCat("ember ran ", c.threads, " engine threads on ", Described(c),
                     ". More threads than vCPUs make every engine step wait for the operating "
                     "system to schedule them; set --threads to ",
                     c.offer->vcpus, " or fewer. This saves no money directly but shortens steps."),
      .monthly_saving = 0,
      .numbers = {{"threads", static_cast<double>(c.threads)}}};
}

}  // namespace

Result<std::vector<InstanceOffer>> ParseInstanceTable(std::string_view text,
                                                      std::string_view file_name) {
  auto root = toml::Read(text, file_name);
  if (!root) return std::unexpected(root.error());
  return ParseOffers(**root, file_name);
}

Result<std::vector<InstanceOffer>> LoadInstanceTable(const std::filesystem::path& path) {
  auto text = detail::ReadTextFile(path, "instance table");
  if (!text) return std::unexpected(text.error());
  return ParseInstanceTable(*text, path.string());
}

std::vector<Recommendation> Advise(const AdviseInput& in) {
  const Observed o = Observe(in);
  const Current c = CurrentOf(in, o);
  const std::map<std::string, double> common = {
      {"utilization", o.utilization()},
      {"idle_fraction", Ratio(o.idle_ns, o.wall_ns)},
      {"cold_start_fraction", Ratio(o.cold_ns, o.wall_ns)},
      {"observed_hours", Ratio(o.wall_ns, kNsPerHour)},
      {"window_hours", Ratio(in.window_ns, kNsPerHour)},
      {"queue_p95_seconds", Ratio(in.queue_ns_p95, kNsPerSecond)},
      {"requests", static_cast<double>(in.requests)},
      {"prompt_tokens", static_cast<double>(in.prompt_tokens)},
      {"completion_tokens", static_cast<double>(in.completion_tokens)},
      {"max_concurrent_seen", static_cast<double>(in.max_concurrent_seen)},
      {"monthly_machine_cost_usd", static_cast<double>(o.Monthly(o.cost)) / kMicrosPerDollar}};
  std::vector<Recommendation> out;
  if (o.wall_ns > 0) {
    for (Rule rule : {IdleRule, SmallerRule, LargerRule, SpotRule, ThreadsRule}) {
      if (auto r = rule(in, o, c)) out.push_back(*std::move(r));
    }
  }
  if (out.empty()) {
    out.push_back(Recommendation{
        .kind = "none",
        .text = o.wall_ns == 0
                    ? std::string("The ledger has no machine intervals in this window, so "
                                  "there is nothing to advise on.")
                    : StrCat("Over the ", Span(o.wall_ns), " recorded (of a ", Span(in.window_ns),
                             " window) ", c.name, " was busy ", Percent(o.utilization()),
                             ", loading models ", Percent(Ratio(o.cold_ns, o.wall_ns)),
                             " and idle ", Percent(Ratio(o.idle_ns, o.wall_ns)), "; ", in.requests,
                             " requests waited ", Seconds(in.queue_ns_p95),
                             " at p95 for a slot. The machine cost ", Dollars(o.cost), " (",
                             Dollars(o.Monthly(o.cost)),
                             " a month at this rate), and no "
                             "rule found a cheaper or faster setup.")});
  }
  for (Recommendation& r : out) r.numbers.insert(common.begin(), common.end());
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.monthly_saving > b.monthly_saving;
  });
  return out;
}

std::string AdviceText(const std::vector<Recommendation>& recommendations) {
  static const std::map<std::string, std::string, std::less<>> kTitles = {
      {"idle_unload", "Scale to zero when idle"},
      {"smaller_instance", "Use a smaller instance"},
      {"larger_instance", "Use a larger instance"},
      {"spot", "Run on spot"},
      {"threads", "Fit --threads to the vCPUs"},
      {"replicas", "Add a replica"},
      {"none", "No change recommended"}};
  std::string out;
  for (const Recommendation& r : recommendations) {
    auto title = kTitles.find(r.kind);
    out += title == kTitles.end() ? r.kind : title->second;
    if (r.monthly_saving > 0) out += StrCat(": saves ", Dollars(r.monthly_saving), "/month");
    if (r.monthly_saving < 0) out += StrCat(": costs ", Dollars(-r.monthly_saving), "/month more");
    out += StrCat("\n  ", r.text, "\n\n");
  }
  return out;
}

std::string AdviceJson(const std::vector<Recommendation>& recommendations) {
  std::string out = "{\"recommendations\": [";
  for (std::size_t i = 0; i < recommendations.size(); ++i) {
    const Recommendation& r = recommendations[i];
    std::string numbers;
    for (const auto& [key, value] : r.numbers) {
      numbers += StrCat(numbers.empty() ? "" : ", ", Quote(key), ": ",
                        std::isfinite(value) ? FormatDouble(value) : std::string("null"));
    }
    out += StrCat(
        i == 0 ? "\n  " : ",\n  ", "{\"kind\": ", Quote(r.kind), ", \"text\": ", Quote(r.text),
        ", \"monthly_saving\": ", Quote(FormatDollars(r.monthly_saving)),
        ", \"monthly_saving_microdollars\": ", r.monthly_saving, ", \"numbers\": {", numbers, "}}");
  }
  return out + (recommendations.empty() ? "]}" : "\n]}");
}

}  // namespace ember::ledger

// The SQLite ledger file: opening (and refusing foreign files), schema migrations, the batched
// write transaction and the reads behind reports and budget restore. The only file that
// includes sqlite3.h.
#include "ledger/store.h"

#include <sqlite3.h>

#include <chrono>
#include <iterator>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "common/log.h"

namespace ember::ledger {
namespace {

namespace fs = std::filesystem;

// Forward migrations: step i takes user_version i to i + 1. Append, never edit a shipped step.
constexpr std::string_view kMigrations[] = {
    R"sql(
CREATE TABLE usage (
  request_id TEXT PRIMARY KEY NOT NULL,
  tenant TEXT NOT NULL,
  key_id TEXT NOT NULL,
  model TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  outcome TEXT NOT NULL,
  finish_reason TEXT NOT NULL,
  http_status INTEGER NOT NULL,
  arrival_ns INTEGER NOT NULL,
  admitted_ns INTEGER NOT NULL,
  first_token_ns INTEGER NOT NULL,
  finished_ns INTEGER NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  cached_prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  queue_ns INTEGER NOT NULL,
  cold_start_ns INTEGER NOT NULL,
  engine_ns INTEGER NOT NULL,
  input_cost INTEGER NOT NULL,
  cached_input_cost INTEGER NOT NULL,
  output_cost INTEGER NOT NULL,
  infra_cost INTEGER NOT NULL,
  spot INTEGER NOT NULL CHECK (spot IN (0, 1)));
CREATE INDEX usage_finished ON usage (finished_ns);
CREATE INDEX usage_tenant_finished ON usage (tenant, finished_ns);
CREATE TABLE intervals (
  start_ns INTEGER PRIMARY KEY NOT NULL,
  end_ns INTEGER NOT NULL,
  busy_ns INTEGER NOT NULL,
  cold_start_ns INTEGER NOT NULL,
  idle_ns INTEGER NOT NULL,
  requests INTEGER NOT NULL,
  queue_ns INTEGER NOT NULL,
  kv_used_permille_max INTEGER NOT NULL,
  threads INTEGER NOT NULL,
  price_per_hour INTEGER NOT NULL,
  on_demand_price_per_hour INTEGER NOT NULL,
  spot INTEGER NOT NULL CHECK (spot IN (0, 1)),
  busy_cost INTEGER NOT NULL,
  cold_start_cost INTEGER NOT NULL,
  idle_cost INTEGER NOT NULL);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ns INTEGER NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL);
CREATE INDEX events_at ON events (at_ns);
)sql",
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

// Column lists, in the order BindRecord/ReadRecord and BindInterval/ReadInterval use.
constexpr std::string_view kUsageColumns =
    "request_id, tenant, key_id, model, endpoint, outcome, finish_reason, http_status, "
    "arrival_ns, admitted_ns, first_token_ns, finished_ns, prompt_tokens, cached_prompt_tokens, "
    "completion_tokens, queue_ns, cold_start_ns, engine_ns, input_cost, cached_input_cost, "
    "output_cost, infra_cost, spot";
constexpr std::string_view kUsagePlaceholders =
    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";
constexpr std::string_view kIntervalColumns =
    "start_ns, end_ns, busy_ns, cold_start_ns, idle_ns, requests, queue_ns, "
    "kv_used_permille_max, threads, price_per_hour, on_demand_price_per_hour, spot, busy_cost, "
    "cold_start_cost, idle_cost";
constexpr std::string_view kIntervalPlaceholders = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?";

struct CloseDb {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct FinalizeStmt {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using DbPtr = std::unique_ptr<sqlite3, CloseDb>;
using StmtPtr = std::unique_ptr<sqlite3_stmt, FinalizeStmt>;

Error MakeErrorValue(ErrorCode code, std::string message) {
  Error error;
  error.code = code;
  error.message = std::move(message);
  return error;
}

// Worth retrying later: the disk is full or failing, or someone else holds the lock.
bool Retryable(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_READONLY:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return true;
    default:
      return false;
  }
}

Error SqlError(sqlite3* db, int rc, std::string_view what) {
  std::string message = StrCat(what, ": ", db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                               " (sqlite code ", rc, ")");
  return MakeErrorValue(Retryable(rc) ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                        std::move(message));
}

Status Exec(sqlite3* db, std::string_view sql, std::string_view what) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db, std::string(sql).c_str(), nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return {};
  std::string text = message != nullptr ? message : sqlite3_errstr(rc);
  sqlite3_free(message);
  return std::unexpected(
      MakeErrorValue(Retryable(rc) ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                     StrCat(what, ": ", text, " (sqlite code ", rc, ")")));
}

// Exec for the set-up statements that change the file's locking (the switch to WAL), which two
// servers starting on one data directory may run at once. SQLite answers one of two
// connections upgrading their locks together with SQLITE_BUSY at once, without calling the busy
// handler (that would deadlock), so this retries for as long as the busy timeout would wait.
Status ExecPastLockRaces(sqlite3* db, std::string_view sql, std::string_view what) {
  constexpr auto kPatience = std::chrono::seconds(5);
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  for (;;) {
    auto done = Exec(db, sql, what);
    if (done || (sqlite3_errcode(db) & 0xff) != SQLITE_BUSY ||
        std::chrono::steady_clock::now() >= deadline) {
      return done;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

Result<StmtPtr> Prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return std::unexpected(SqlError(db, rc, StrCat("preparing ", sql)));
  return StmtPtr(stmt);
}

// The first column of the first row of SQL, which must return one.
Result<std::int64_t> QueryInt(sqlite3* db, std::string_view sql) {
  auto stmt = Prepare(db, sql);
  if (!stmt) return std::unexpected(stmt.error());
  const int rc = sqlite3_step(stmt->get());
  if (rc != SQLITE_ROW) return std::unexpected(SqlError(db, rc, sql));
  return sqlite3_column_int64(stmt->get(), 0);
}

// Binds parameters left to right; the first failure sticks in rc.
class Binder {
 public:
  explicit Binder(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Binder& Int(std::int64_t v) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_int64(stmt_, next_++, v);
    return *this;
  }
  Binder& Text(const std::string& v) {
    if (rc_ == SQLITE_OK) {
      rc_ = sqlite3_bind_text(stmt_, next_++, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    }
    return *this;
  }
  int rc() const { return rc_; }

 private:
  sqlite3_stmt* stmt_;
  int next_ = 1;
  int rc_ = SQLITE_OK;
};

// Reads the columns of the current row left to right.
class Columns {
 public:
  explicit Columns(sqlite3_stmt* stmt) : stmt_(stmt) {}
  std::int64_t Int() { return sqlite3_column_int64(stmt_, next_++); }
  bool Bool() { return Int() != 0; }
  std::string Text() {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, next_));
    const int size = sqlite3_column_bytes(stmt_, next_++);
    return text != nullptr ? std::string(text, static_cast<std::size_t>(size)) : std::string();
  }

 private:
  sqlite3_stmt* stmt_;
  int next_ = 0;
};

int BindRecord(sqlite3_stmt* stmt, const UsageRecord& r) {
  return Binder(stmt)
      .Text(r.request_id)
      .Text(r.tenant)
      .Text(r.key_id)
      .Text(r.model)
      .Text(r.endpoint)
      .Text(r.outcome)
      .Text(r.finish_reason)
      .Int(r.http_status)
      .Int(r.arrival_ns)
      .Int(r.admitted_ns)
      .Int(r.first_token_ns)
      .Int(r.finished_ns)
      .Int(r.prompt_tokens)
      .Int(r.cached_prompt_tokens)
      .Int(r.completion_tokens)
      .Int(r.queue_ns)
      .Int(r.cold_start_ns)
      .Int(r.engine_ns)
      .Int(r.input_cost)
      .Int(r.cached_input_cost)
      .Int(r.output_cost)
      .Int(r.infra_cost)
      .Int(r.spot ? 1 : 0)
      .rc();
}

UsageRecord ReadRecord(sqlite3_stmt* stmt) {
  Columns c(stmt);
  UsageRecord r;
  r.request_id = c.Text();
  r.tenant = c.Text();
  r.key_id = c.Text();
  r.model = c.Text();
  r.endpoint = c.Text();
  r.outcome = c.Text();
  r.finish_reason = c.Text();
  r.http_status = static_cast<int>(c.Int());
  r.arrival_ns = c.Int();
  r.admitted_ns = c.Int();
  r.first_token_ns = c.Int();
  r.finished_ns = c.Int();
  r.prompt_tokens = c.Int();
  r.cached_prompt_tokens = c.Int();
  r.completion_tokens = c.Int();
  r.queue_ns = c.Int();
  r.cold_start_ns = c.Int();
  r.engine_ns = c.Int();
  r.input_cost = c.Int();
  r.cached_input_cost = c.Int();
  r.output_cost = c.Int();
  r.infra_cost = c.Int();
  r.spot = c.Bool();
  return r;
}

int BindInterval(sqlite3_stmt* stmt, const UsageInterval& i) {
  return Binder(stmt)
      .Int(i.start_ns)
      .Int(i.end_ns)
      .Int(i.busy_ns)
      .Int(i.cold_start_ns)
      .Int(i.idle_ns)
      .Int(i.requests)
      .Int(i.queue_ns)
      .Int(i.kv_used_permille_max)
      .Int(i.threads)
      .Int(i.price_per_hour)
      .Int(i.on_demand_price_per_hour)
      .Int(i.spot ? 1 : 0)
      .Int(i.busy_cost)
      .Int(i.cold_start_cost)
      .Int(i.idle_cost)
      .rc();
}

UsageInterval ReadInterval(sqlite3_stmt* stmt) {
  Columns c(stmt);
  UsageInterval i;
  i.start_ns = c.Int();
  i.end_ns = c.Int();
  i.busy_ns = c.Int();
  i.cold_start_ns = c.Int();
  i.idle_ns = c.Int();
  i.requests = c.Int();
  i.queue_ns = c.Int();
  i.kv_used_permille_max = c.Int();
  i.threads = c.Int();
  i.price_per_hour = c.Int();
  i.on_demand_price_per_hour = c.Int();
  i.spot = c.Bool();
  i.busy_cost = c.Int();
  i.cold_start_cost = c.Int();
  i.idle_cost = c.Int();
  return i;
}

// Steps STMT to the end, calling on_row for each row.
template <typename OnRow>
Status StepAll(sqlite3* db, sqlite3_stmt* stmt, std::string_view what, OnRow on_row) {
  for (;;) {
    const int rc = sqlite3_step(stmt);
    if (rc == SQLITE_DONE) return {};
    if (rc != SQLITE_ROW) return std::unexpected(SqlError(db, rc, what));
    on_row(stmt);
  }
}

// Steps STMT once (when BIND_RC, the binding's result, is ok) and resets it: SQLITE_OK when it
// ran to completion, else the failure's code.
int Step(sqlite3_stmt* stmt, int bind_rc) {
  const int rc = bind_rc == SQLITE_OK ? sqlite3_step(stmt) : bind_rc;
  sqlite3_reset(stmt);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

Error Refuse(const fs::path& file, std::string_view why) {
  return MakeErrorValue(ErrorCode::kInvalidArgument, StrCat(file.string(), " ", why));
}

// Reads the header fields that say whose file this is, without writing anything; returns the
// schema version (0 for a new, empty file) or why the file must not be touched.
Result<int> CheckFile(sqlite3* db, const fs::path& file, bool read_only) {
  // The three header reads share one read transaction: another process may be creating the
  // ledger meanwhile, and a mix of its before and after (tables, but no application_id yet)
  // would look like a foreign file.
  if (auto begun = Exec(db, "BEGIN", "reading the ledger's header"); !begun) {
    return std::unexpected(begun.error());
  }
  auto app_id = QueryInt(db, "PRAGMA application_id");
  std::optional<Result<std::int64_t>> version, objects;
  if (app_id) {
    version = QueryInt(db, "PRAGMA user_version");
    if (*version) objects = QueryInt(db, "SELECT count(*) FROM sqlite_master");
  }
  const int failed_rc = sqlite3_extended_errcode(db);
  const std::string failed_message = sqlite3_errmsg(db);
  if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  if (!app_id) {
    const int rc = failed_rc;
    if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT) {
      return std::unexpected(Refuse(
          file,
          StrCat((rc & 0xff) == SQLITE_NOTADB ? "is not an SQLite database (" : "is corrupt (",
                 failed_message, "), so not an ember ledger; refusing to touch it")));
    }
    return std::unexpected(app_id.error());
  }
  if (!*version) return std::unexpected(version->error());
  if (!*objects) return std::unexpected(objects->error());
  const std::int64_t schema = **version;
  const bool empty = *app_id == 0 && schema == 0 && **objects == 0;
  if (*app_id != Store::kApplicationId && !(empty && !read_only)) {
    return std::unexpected(
        Refuse(file, StrCat("is not an ember ledger (application_id ", *app_id, ", expected ",
                            Store::kApplicationId, "); refusing to touch it")));
  }
  if (schema > Store::kSchemaVersion) {
    return std::unexpected(
        Refuse(file, StrCat("has ledger schema version ", schema, ", newer than this ember's (",
                            Store::kSchemaVersion, "); upgrade ember to use it")));
  }
  if (read_only && schema < Store::kSchemaVersion) {
    return std::unexpected(Refuse(file, StrCat("has ledger schema version ", schema,
                                               "; start the server on it once to migrate it")));
  }
  // The integrity scan reads the whole file, so only the writer runs it (once, at server
  // start): a reader cannot damage the file, and a report on a corrupt one fails on the pages
  // it reads (SQLITE_CORRUPT) instead of paying a full scan on every `ember cost report`.
  if (read_only) return static_cast<int>(schema);
  auto check = Prepare(db, "PRAGMA quick_check(5)");
  if (!check) return std::unexpected(check.error());
  std::string problems;
  auto stepped = StepAll(db, check->get(), "PRAGMA quick_check", [&](sqlite3_stmt* stmt) {
    std::string line = Columns(stmt).Text();
    if (line != "ok") problems += problems.empty() ? line : StrCat("; ", line);
  });
  if (!stepped) {
    return std::unexpected(
        Refuse(file, StrCat("is corrupt (", stepped.error().message, "); refusing to touch it")));
  }
  if (!problems.empty()) {
    return std::unexpected(
        Refuse(file, StrCat("is corrupt (quick_check: ", problems, "); refusing to touch it")));
  }
  return static_cast<int>(schema);
}

Status Migrate(sqlite3* db, const fs::path& file) {
  const std::string what = StrCat("migrating the ledger ", file.string());
  if (auto begun = Exec(db, "BEGIN IMMEDIATE", what); !begun) return begun;
  auto run = [&]() -> Status {
    // Read again under the write lock: another process may have migrated it meanwhile.
    auto version = QueryInt(db, "PRAGMA user_version");
    if (!version) return std::unexpected(version.error());
    for (auto v = *version; v < Store::kSchemaVersion; ++v) {
      if (auto step = Exec(db, kMigrations[v], what); !step) return step;
      log::Info("ledger ", file.string(), ": schema version ", v + 1);
    }
    if (auto set = Exec(db, StrCat("PRAGMA application_id = ", Store::kApplicationId), what);
        !set) {
      return set;
    }
    if (auto set = Exec(db, StrCat("PRAGMA user_version = ", Store::kSchemaVersion), what); !set) {
      return set;
    }
    return Exec(db, "COMMIT", what);
  };
  auto done = run();
  if (!done && sqlite3_get_autocommit(db) == 0) (void)Exec(db, "ROLLBACK", what);
  return done;
}

}  // namespace

class Store::Impl {
 public:
  // Runs the cached inserts for a batch inside the caller's transaction, adding the usage rows
  // inserted to INSERTED. Returns SQLITE_OK or the first failure's code (the db's errmsg says
  // why). Requires mu.
  int Insert(std::span<const UsageRecord> records, std::span<const UsageInterval> intervals,
             std::span<const MachineEvent> events, int& inserted) {
    for (const auto& r : records) {
      if (int rc = Step(insert_usage.get(), BindRecord(insert_usage.get(), r)); rc != SQLITE_OK) {
        return rc;
      }
      inserted += sqlite3_changes(db.get());
    }
    for (const auto& i : intervals) {
      auto* stmt = insert_interval.get();
      if (int rc = Step(stmt, BindInterval(stmt, i)); rc != SQLITE_OK) return rc;
    }
    for (const auto& e : events) {
      auto* stmt = insert_event.get();
      if (int rc = Step(stmt, Binder(stmt).Int(e.at_ns).Text(e.kind).Text(e.detail).rc());
          rc != SQLITE_OK) {
        return rc;
      }
    }
    return SQLITE_OK;
  }

  std::mutex mu;
  DbPtr db;                 // GUARDED_BY(mu)
  StmtPtr insert_usage;     // GUARDED_BY(mu)
  StmtPtr insert_interval;  // GUARDED_BY(mu)
  StmtPtr insert_event;     // GUARDED_BY(mu)
};

namespace {

Result<DbPtr> OpenDb(const fs::path& file, bool read_only) {
  const int flags = SQLITE_OPEN_NOMUTEX |
                    (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(file.c_str(), &raw, flags, nullptr);
  DbPtr db(raw);
  if (rc != SQLITE_OK) {
    return std::unexpected(
        MakeErrorValue(ErrorCode::kUnavailable,
                       StrCat("cannot open the ledger ", file.string(), ": ",
                              raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc))));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), 5000);
  return db;
}

}  // namespace

Store::Store(std::filesystem::path path, std::unique_ptr<Impl> impl)
    : path_(std::move(path)), impl_(std::move(impl)) {}

Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& file, SyncMode sync) {
  if (file.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (ec) {
      return Unavailable(StrCat("cannot create the ledger's directory ",
                                file.parent_path().string(), ": ", ec.message()));
    }
  }
  auto db = OpenDb(file, /*read_only=*/false);
  if (!db) return std::unexpected(db.error());
  sqlite3* raw = db->get();
  auto version = CheckFile(raw, file, /*read_only=*/false);
  if (!version) return std::unexpected(version.error());
  const std::string what = StrCat("setting up the ledger ", file.string());
  if (auto wal = ExecPastLockRaces(raw, "PRAGMA journal_mode = WAL", what); !wal) {
    return std::unexpected(wal.error());
  }
  if (auto s = Exec(
          raw,
          sync == SyncMode::kFull ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
          what);
      !s) {
    return std::unexpected(s.error());
  }
  if (*version < kSchemaVersion) {
    if (auto migrated = Migrate(raw, file); !migrated) return std::unexpected(migrated.error());
  }
  auto impl = std::make_unique<Impl>();
  auto usage = Prepare(raw, StrCat("INSERT OR IGNORE INTO usage (", kUsageColumns, ") VALUES (",
                                   kUsagePlaceholders, ")"));
  auto interval = Prepare(raw, StrCat("INSERT OR REPLACE INTO intervals (", kIntervalColumns,
                                      ") VALUES (", kIntervalPlaceholders, ")"));
  auto event = Prepare(raw, "INSERT INTO events (at_ns, kind, detail) VALUES (?, ?, ?)");
  if (!usage) return std::unexpected(usage.error());
  if (!interval) return std::unexpected(interval.error());
  if (!event) return std::unexpected(event.error());
  impl->db = std::move(*db);
  impl->insert_usage = std::move(*usage);
  impl->insert_interval = std::move(*interval);
  impl->insert_event = std::move(*event);
  return std::unique_ptr<Store>(new Store(file, std::move(impl)));
}

Result<std::unique_ptr<Store>> Store::OpenReadOnly(const std::filesystem::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) return NotFound(StrCat("no ledger at ", file.string()));
  auto db = OpenDb(file, /*read_only=*/true);
  if (!db) return std::unexpected(db.error());
  if (auto version = CheckFile(db->get(), file, /*read_only=*/true); !version) {
    return std::unexpected(version.error());
  }
  auto impl = std::make_unique<Impl>();
  impl->db = std::move(*db);
  return std::unique_ptr<Store>(new Store(file, std::move(impl)));
}

Result<int> Store::Write(std::span<const UsageRecord> records,
                         std::span<const UsageInterval> intervals,
                         std::span<const MachineEvent> events) {
  std::lock_guard lock(impl_->mu);
  if (records.empty() && intervals.empty() && events.empty()) return 0;
  if (!impl_->insert_usage) return Internal(StrCat("the ledger ", path_.string(), " is read-only"));
  sqlite3* db = impl_->db.get();
  const std::string what = StrCat("writing the ledger ", path_.string());
  if (auto begun = Exec(db, "BEGIN IMMEDIATE", what); !begun) return std::unexpected(begun.error());
  int inserted = 0;
  int rc = impl_->Insert(records, intervals, events, inserted);
  std::string message = rc == SQLITE_OK ? "" : sqlite3_errmsg(db);
  if (rc == SQLITE_OK) {
    rc = sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) message = sqlite3_errmsg(db);
  }
  if (rc == SQLITE_OK) return inserted;
  if (sqlite3_get_autocommit(db) == 0) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  return std::unexpected(
      MakeErrorValue(Retryable(rc) ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                     StrCat(what, ": ", message, " (sqlite code ", rc, ")")));
}

Result<std::vector<UsageRecord>> Store::Records(const Filter& filter) {
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db.get();
  std::string sql =
      StrCat("SELECT ", kUsageColumns, " FROM usage WHERE finished_ns >= ? AND finished_ns < ?");
  if (filter.tenant) sql += " AND tenant = ?";
  if (filter.model) sql += " AND model = ?";
  if (filter.key_id) sql += " AND key_id = ?";
  sql += " ORDER BY finished_ns, request_id";
  auto stmt = Prepare(db, sql);
  if (!stmt) return std::unexpected(stmt.error());
  Binder bind(stmt->get());
  bind.Int(filter.since_ns).Int(filter.until_ns);
  if (filter.tenant) bind.Text(*filter.tenant);
  if (filter.model) bind.Text(*filter.model);
  if (filter.key_id) bind.Text(*filter.key_id);
  if (bind.rc() != SQLITE_OK) return std::unexpected(SqlError(db, bind.rc(), "reading usage"));
  std::vector<UsageRecord> out;
  auto done = StepAll(db, stmt->get(), "reading usage",
                      [&](sqlite3_stmt* s) { out.push_back(ReadRecord(s)); });
  if (!done) return std::unexpected(done.error());
  return out;
}

Result<std::vector<UsageInterval>> Store::Intervals(std::int64_t since_ns, std::int64_t until_ns) {
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(db, StrCat("SELECT ", kIntervalColumns,
                                 " FROM intervals WHERE start_ns >= ? AND start_ns < ?"
                                 " ORDER BY start_ns"));
  if (!stmt) return std::unexpected(stmt.error());
  if (int rc = Binder(stmt->get()).Int(since_ns).Int(until_ns).rc(); rc != SQLITE_OK) {
    return std::unexpected(SqlError(db, rc, "reading intervals"));
  }
  std::vector<UsageInterval> out;
  auto done = StepAll(db, stmt->get(), "reading intervals",
                      [&](sqlite3_stmt* s) { out.push_back(ReadInterval(s)); });
  if (!done) return std::unexpected(done.error());
  return out;
}

Result<std::vector<MachineEvent>> Store::Events(std::int64_t since_ns, std::int64_t until_ns) {
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(db,
                      "SELECT at_ns, kind, detail FROM events WHERE at_ns >= ? AND at_ns < ? "
                      "ORDER BY id");
  if (!stmt) return std::unexpected(stmt.error());
  if (int rc = Binder(stmt->get()).Int(since_ns).Int(until_ns).rc(); rc != SQLITE_OK) {
    return std::unexpected(SqlError(db, rc, "reading events"));
  }
  std::vector<MachineEvent> out;
  auto done = StepAll(db, stmt->get(), "reading events", [&](sqlite3_stmt* s) {
    Columns c(s);
    MachineEvent e;
    e.at_ns = c.Int();
    e.kind = c.Text();
    e.detail = c.Text();
    out.push_back(std::move(e));
  });
  if (!done) return std::unexpected(done.error());
  return out;
}

Result<Microdollars> Store::SpentSince(const std::string& tenant, std::int64_t since_ns) {
  std::lock_guard lock(impl_->mu);
  sqlite3* db = impl_->db.get();
  auto stmt = Prepare(db,
                      "SELECT COALESCE(SUM(input_cost + cached_input_cost + output_cost), 0) "
                      "FROM usage WHERE tenant = ? AND finished_ns >= ?");
  if (!stmt) return std::unexpected(stmt.error());
  if (int rc = Binder(stmt->get()).Text(tenant).Int(since_ns).rc(); rc != SQLITE_OK) {
    return std::unexpected(SqlError(db, rc, "reading spend"));
  }
  const int rc = sqlite3_step(stmt->get());
  if (rc != SQLITE_ROW) return std::unexpected(SqlError(db, rc, "reading spend"));
  return sqlite3_column_int64(stmt->get(), 0);
}

Result<std::int64_t> Store::CountRecords() {
  std::lock_guard lock(impl_->mu);
  return QueryInt(impl_->db.get(), "SELECT count(*) FROM usage");
}

Status Store::SetMaxPageCountForTest(std::int64_t pages) {
  std::lock_guard lock(impl_->mu);
  auto set = QueryInt(impl_->db.get(), StrCat("PRAGMA max_page_count = ", pages));
  if (!set) return std::unexpected(set.error());
  return {};
}

std::int64_t SqliteMemoryBytes() { return sqlite3_memory_used(); }

}  // namespace ember::ledger

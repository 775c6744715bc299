// The prefix cache's RAM tier (docs/prefix_cache.md): copies of slots' KV cells in host memory.
// The scheduler puts a slot's prompt cache here when that slot is about to be overwritten, and
// restores an entry into a slot when a new prompt starts with more of its tokens than any slot
// holds. Entries are keyed by tenancy scope (whose requests may reuse them) and by the exact
// tokens their cells hold. The bytes held never exceed the capacity; to make room the store
// evicts the least valuable entry first, by GreedyDual: an entry's credit is the inflation
// value at its last use plus the tokens a hit on it saves, the entry with the lowest credit goes,
// and the inflation value rises to that credit. So a long prefix outlives a short one used at
// the same time, but not one used much more recently.
//
// Threads: engine thread only (one store per model, owned by its Scheduler).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/engine.h"

namespace ember::scheduler {

class PrefixStore {
 public:
  struct Entry {
    std::uint64_t id = 0;
    std::string scope;
    std::vector<engine::Token> tokens;  // the positions its cells hold, in order
    // Shared with the disk tier's writer while it writes them; never changed once saved.
    std::shared_ptr<const engine::CellsSnapshot> cells;
    std::uint64_t credit = 0;
    bool from_disk = false;  // read from the disk tier at start (PrefixDisk)
  };
  // The entry of `scope` that shares the most leading tokens with a prompt: `tokens` of them.
  struct Match {
    std::uint64_t id = 0;  // 0: none
    int tokens = 0;
  };

  explicit PrefixStore(std::uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  // False when nothing could be stored (capacity 0, or cells larger than all of it).
  bool enabled() const { return capacity_ > 0; }
  // An entry of `scope` already holds `tokens` or more after them: saving them adds nothing.
  bool Covers(std::string_view scope, std::span<const engine::Token> tokens) const;
  // Stores the cells, evicting as the bound requires. Entries of the same scope whose tokens are
  // a prefix of `tokens` are dropped (the new entry serves every hit they would). False when
  // the cells cannot fit, or the entry is Covered already; the cells are then dropped.
  bool Put(std::string scope, std::vector<engine::Token> tokens,
           std::shared_ptr<const engine::CellsSnapshot> cells, bool from_disk = false);
  // The longest shared prefix among `scope`'s entries; with need_invariant, only among entries
  // whose cells are invariant() (for a deterministic sequence). Ties: the most recently used.
  Match Find(std::string_view scope, std::span<const engine::Token> prompt,
             bool need_invariant) const;
  // The entry with that id, or nullptr when it was evicted meanwhile.
  const Entry* Get(std::uint64_t id) const;
  // A hit on the entry: it earns its credit again.
  void Touch(std::uint64_t id);

  std::uint64_t capacity() const { return capacity_; }
  std::uint64_t bytes() const { return bytes_; }
  int entries() const { return static_cast<int>(entries_.size()); }
  std::uint64_t evictions() const { return evictions_; }  // entries evicted for room, ever

 private:
  void Remove(std::size_t index);

  std::uint64_t capacity_;
  std::uint64_t bytes_ = 0;
  std::uint64_t inflation_ = 0;
  std::uint64_t evictions_ = 0;
  std::uint64_t next_id_ = 1;
  std::uint64_t clock_ = 0;  // ties in Find: the later use wins
  std::vector<Entry> entries_;
  std::vector<std::uint64_t> used_;  // per entry: clock_ at its last Put or Touch
};

}  // namespace ember::scheduler

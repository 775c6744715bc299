#include "scheduler/prefix_store.h"

#include <algorithm>

namespace ember::scheduler {

namespace {
std::size_t Shared(std::span<const engine::Token> a, std::span<const engine::Token> b) {
  return static_cast<std::size_t>(std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first -
                                  a.begin());
}
}  // namespace

bool PrefixStore::Covers(std::string_view scope, std::span<const engine::Token> tokens) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) {
    return e.scope == scope && e.tokens.size() >= tokens.size() &&
           Shared(e.tokens, tokens) == tokens.size();
  });
}

bool PrefixStore::Put(std::string scope, std::vector<engine::Token> tokens,
                      std::shared_ptr<const engine::CellsSnapshot> cells, bool from_disk) {
  if (cells == nullptr || tokens.empty() || cells->bytes() > capacity_) return false;
  if (Covers(scope, tokens)) return false;
  for (std::size_t i = entries_.size(); i-- > 0;) {
    const Entry& e = entries_[i];
    if (e.scope == scope && Shared(e.tokens, tokens) == e.tokens.size()) Remove(i);
  }
  while (bytes_ + cells->bytes() > capacity_) {
    std::size_t victim = 0;
    for (std::size_t i = 1; i < entries_.size(); ++i) {
      if (entries_[i].credit < entries_[victim].credit ||
          (entries_[i].credit == entries_[victim].credit && used_[i] < used_[victim])) {
        victim = i;
      }
    }
    inflation_ = std::max(inflation_, entries_[victim].credit);
    Remove(victim);
    ++evictions_;
  }
  bytes_ += cells->bytes();
  const std::uint64_t credit = inflation_ + tokens.size();
  entries_.push_back(
      {next_id_++, std::move(scope), std::move(tokens), std::move(cells), credit, from_disk});
  used_.push_back(++clock_);
  return true;
}

PrefixStore::Match PrefixStore::Find(std::string_view scope, std::span<const engine::Token> prompt,
                                     bool need_invariant) const {
  Match best;
  std::uint64_t best_used = 0;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.scope != scope || (need_invariant && !e.cells->invariant())) continue;
    const int shared = static_cast<int>(Shared(e.tokens, prompt));
    if (shared > best.tokens || (shared == best.tokens && shared > 0 && used_[i] > best_used)) {
      best = {e.id, shared};
      best_used = used_[i];
    }
  }
  return best;
}

const PrefixStore::Entry* PrefixStore::Get(std::uint64_t id) const {
  for (const Entry& e : entries_) {
    if (e.id == id) return &e;
  }
  return nullptr;
}

void PrefixStore::Touch(std::uint64_t id) {
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].id != id) continue;
    entries_[i].credit = inflation_ + entries_[i].tokens.size();
    used_[i] = ++clock_;
  }
}

void PrefixStore::Remove(std::size_t index) {
  bytes_ -= entries_[index].cells->bytes();
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(index));
  used_.erase(used_.begin() + static_cast<std::ptrdiff_t>(index));
}

}  // namespace ember::scheduler

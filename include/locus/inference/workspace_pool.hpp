// A fixed set of workspaces that concurrent calls lease: made once with the plan, so that a
// call allocates nothing, and handed out one per running thread so that calls from any
// number of threads are safe. A caller that finds every workspace taken waits for one.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace locus::inference {

template <class Workspace>
class WorkspacePool {
 public:
  WorkspacePool() = default;
  template <class Make>
  WorkspacePool(std::size_t count, Make make) {
    for (std::size_t i = 0; i < count; ++i) {
      all_.push_back(make());
      free_.push_back(all_.back().get());
    }
  }
  WorkspacePool(WorkspacePool&& o) noexcept : all_(std::move(o.all_)), free_(std::move(o.free_)) {}

  std::size_t size() const { return all_.size(); }

  /// The workspace of one running call (or chunk of one), returned when it ends.
  class Lease {
   public:
    explicit Lease(WorkspacePool& pool) : pool_(pool) {
      std::unique_lock<std::mutex> lock(pool_.mutex_);
      pool_.returned_.wait(lock, [&] { return !pool_.free_.empty(); });
      ws_ = pool_.free_.back();
      pool_.free_.pop_back();  // free_ keeps its capacity: no allocation when it is pushed again
    }
    ~Lease() {
      {
        std::lock_guard<std::mutex> lock(pool_.mutex_);
        pool_.free_.push_back(ws_);
      }
      pool_.returned_.notify_one();
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Workspace& operator*() const { return *ws_; }
    Workspace* operator->() const { return ws_; }

   private:
    WorkspacePool& pool_;
    Workspace* ws_ = nullptr;
  };

 private:
  std::vector<std::unique_ptr<Workspace>> all_;
  std::vector<Workspace*> free_;
  std::mutex mutex_;
  std::condition_variable returned_;
};

}  // namespace locus::inference

// upload_stream<N>: host data to Device<GPU, N> without blocking, overlapping the device's
// work (what a data pipeline's prefetch uses).
//
// Each upload is copied into a slot of pinned host memory (CL_MEM_ALLOC_HOST_PTR, mapped
// once), written to a device staging buffer by a non-blocking write on the device's
// transfer queue, and then, on the main queue, a barrier waits for that write's event
// and device copies move the data into the destination buffers. So the bus transfer runs
// while the main queue computes, and the destination buffers, which come from the memory
// pool like every tensor's, are written only on the main queue, in order with everything
// else that reads or reuses them. A slot is reused once the main queue has copied out of it
// (an event marks that), so host and device memory stay bounded by the number of slots.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "../../counters.hpp"
#include "../../device.hpp"
#include "error.hpp"
#include "runtime.hpp"

namespace locus::backend::opencl {

template <std::size_t N>
class upload_stream {
 public:
  /// One piece of an upload: `bytes` from `host` into the start of device buffer `dst`.
  struct part {
    const void* host;
    cl_mem dst;
    std::size_t bytes;
  };

  explicit upload_stream(std::size_t slots) : dc_(device_of<N>()), slots_(slots ? slots : 1) {}
  upload_stream(const upload_stream&) = delete;
  upload_stream& operator=(const upload_stream&) = delete;
  ~upload_stream() {
    for (auto& s : slots_) free_slot(s);
  }

  /// Enqueues the parts (returns once the host data is copied into pinned memory; the
  /// destinations hold the data for every later command of the device's main queue).
  void upload(const part* parts, std::size_t count) {
    std::size_t total = 0;
    for (std::size_t i = 0; i < count; ++i) total += parts[i].bytes;
    if (total == 0) return;
    slot& s = slots_[next_++ % slots_.size()];
    wait_free(s);
    cl_event ready = nullptr;
    if (s.capacity < total) ready = grow(s, total);
    std::size_t at = 0;
    for (std::size_t i = 0; i < count; ++i) {
      std::memcpy(static_cast<char*>(s.host) + at, parts[i].host, parts[i].bytes);
      at += parts[i].bytes;
    }
    cl_command_queue tq = dc_.transfer_queue();
    cl_int err = clEnqueueWriteBuffer(tq, s.staging, CL_FALSE, 0, total, s.host, ready ? 1 : 0,
                                      ready ? &ready : nullptr, &s.written);
    if (ready) clReleaseEvent(ready);
    check(err, "clEnqueueWriteBuffer (prefetch)", dc_.info.name);
    check(clFlush(tq), "clFlush (transfer queue)", dc_.info.name);
    check(clEnqueueBarrierWithWaitList(dc_.queue, 1, &s.written, nullptr),
          "clEnqueueBarrierWithWaitList", dc_.info.name);
    at = 0;
    for (std::size_t i = 0; i < count; ++i) {
      if (parts[i].bytes) {
        check(clEnqueueCopyBuffer(dc_.queue, s.staging, parts[i].dst, at, 0, parts[i].bytes, 0,
                                  nullptr, nullptr),
              "clEnqueueCopyBuffer (prefetch)", dc_.info.name);
      }
      at += parts[i].bytes;
    }
    check(clEnqueueMarkerWithWaitList(dc_.queue, 0, nullptr, &s.consumed),
          "clEnqueueMarkerWithWaitList", dc_.info.name);
    check(clFlush(dc_.queue), "clFlush", dc_.info.name);
    dc_.host_writes.fetch_add(1, std::memory_order_relaxed);
  }

 private:
  struct slot {
    cl_mem pinned = nullptr;
    void* host = nullptr;
    cl_mem staging = nullptr;  // from the memory pool
    std::size_t capacity = 0;
    cl_event written = nullptr;   // the write of the last upload
    cl_event consumed = nullptr;  // the main queue has copied the last upload out
  };

  static void wait_and_release(cl_event& e) noexcept {
    if (!e) return;
    clWaitForEvents(1, &e);
    clReleaseEvent(e);
    e = nullptr;
  }

  static void wait_free(slot& s) {
    wait_and_release(s.consumed);
    wait_and_release(s.written);
  }

  // A larger slot. Returns an event the first write must wait for: the staging buffer
  // may be a pool buffer the main queue used until now, so the transfer queue may write
  // into it only once the main queue has passed this point.
  cl_event grow(slot& s, std::size_t bytes) {
    free_slot(s);
    cl_int err = CL_SUCCESS;
    s.pinned =
        clCreateBuffer(dc_.context, CL_MEM_READ_ONLY | CL_MEM_ALLOC_HOST_PTR, bytes, nullptr, &err);
    if (is_out_of_memory(err)) {
      throw out_of_memory_error("locus: out of pinned host memory for a prefetch slot of " +
                                    std::to_string(bytes) + " bytes on " + dc_.info.name,
                                bytes, 0);
    }
    check(err, "clCreateBuffer (pinned prefetch slot)", dc_.info.name);
    s.host = clEnqueueMapBuffer(dc_.transfer_queue(), s.pinned, CL_TRUE, CL_MAP_WRITE, 0, bytes, 0,
                                nullptr, nullptr, &err);
    if (err != CL_SUCCESS) {
      clReleaseMemObject(s.pinned);
      s.pinned = nullptr;
      check(err, "clEnqueueMapBuffer (pinned prefetch slot)", dc_.info.name);
    }
    s.staging = dc_.pool->allocate(bytes);
    s.capacity = bytes;
    cl_event ready = nullptr;
    check(clEnqueueMarkerWithWaitList(dc_.queue, 0, nullptr, &ready), "clEnqueueMarkerWithWaitList",
          dc_.info.name);
    check(clFlush(dc_.queue), "clFlush", dc_.info.name);
    return ready;
  }

  void free_slot(slot& s) noexcept {
    wait_free(s);
    if (s.pinned) {
      cl_command_queue tq = dc_.transfer_queue();
      cl_event unmapped = nullptr;
      if (clEnqueueUnmapMemObject(tq, s.pinned, s.host, 0, nullptr, &unmapped) == CL_SUCCESS)
        wait_and_release(unmapped);
      clReleaseMemObject(s.pinned);
    }
    if (s.staging) dc_.pool->release(s.staging, s.capacity);
    s = slot{};
  }

  device_context& dc_;
  std::vector<slot> slots_;
  std::size_t next_ = 0;
};

}  // namespace locus::backend::opencl

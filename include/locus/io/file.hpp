// Whole-file reads and crash-safe whole-file writes, the only two ways the io component
// touches the file system. Saving a model must never leave a half-written file where a
// good one was: write_file_atomically writes a temporary next to the target and renames
// it over the target only once every byte is on disk.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "../error.hpp"

namespace locus::io {

namespace detail {

inline std::string errno_text(int code) {
  return std::strerror(code);
}

/// Closes a POSIX descriptor on scope exit unless released (the error paths of the
/// writer must close before they unlink, and must not close twice).
class FdGuard {
 public:
  explicit FdGuard(int fd) noexcept : fd_(fd) {}
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }
  /// Closes now and reports close's own error (on NFS a failed write may surface only here).
  int close_now() noexcept {
    int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

/// Writes every byte, retrying partial writes and EINTR. Returns 0 or the errno.
inline int write_all(int fd, const std::byte* data, std::size_t size) noexcept {
  while (size > 0) {
    // Linux writes at most 0x7ffff000 bytes per call; asking for less keeps the loop
    // independent of that limit.
    std::size_t chunk = size < (std::size_t{1} << 30) ? size : (std::size_t{1} << 30);
    ssize_t n = ::write(fd, data, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // no progress and no error: treat as an I/O error, not a hang
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

/// A name for the temporary that no other writer in this or another process picks:
/// random bits plus a per-process counter.
inline std::string temporary_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  thread_local std::mt19937_64 bits{std::random_device{}() ^
                                    (static_cast<std::uint64_t>(::getpid()) << 32)};
  std::uint64_t value = bits() ^ (counter.fetch_add(1) * 0x9e3779b97f4a7c15ull);
  static constexpr char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string suffix;
  for (int i = 0; i < 10; ++i) {
    suffix += alphabet[value % 36];
    value /= 36;
  }
  return suffix;
}

}  // namespace detail

/// Reads a whole file. io_error (naming the path and the system's reason) if it cannot be
/// opened or read; format_error if it is larger than max_bytes, checked before allocating
/// and again while reading (a pipe or a growing file has no trustworthy size).
inline std::vector<std::byte> read_file(const std::filesystem::path& path,
                                        std::size_t max_bytes = 1ull << 34) {
  const std::string name = path.string();
  int fd;
  do {
    fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw io_error(name + ": cannot open for reading: " + detail::errno_text(errno));
  detail::FdGuard guard(fd);
  struct stat info {};
  if (::fstat(fd, &info) != 0) throw io_error(name + ": cannot stat: " + detail::errno_text(errno));
  if (S_ISDIR(info.st_mode)) throw io_error(name + ": is a directory, not a file");
  // A regular file is read straight into a buffer of its size; anything past that (a file
  // that grew, or a pipe with no size at all) goes through a small chunk, so that seeing
  // the end of file never doubles a large buffer.
  std::size_t expected = 0;
  if (S_ISREG(info.st_mode)) {
    auto size = static_cast<std::uint64_t>(info.st_size);
    if (size > max_bytes)
      throw format_error(name + ": file of " + std::to_string(size) + " bytes is larger than the " +
                         std::to_string(max_bytes) + "-byte limit");
    expected = static_cast<std::size_t>(size);
  }
  std::vector<std::byte> bytes(expected);
  std::vector<std::byte> chunk(std::size_t{1} << 16);
  std::size_t used = 0;
  for (;;) {
    const bool direct = used < bytes.size();
    std::byte* target = direct ? bytes.data() + used : chunk.data();
    std::size_t want = direct ? bytes.size() - used : chunk.size();
    ssize_t n = ::read(fd, target, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error(name + ": cannot read: " + detail::errno_text(errno));
    }
    if (n == 0) break;
    const auto got = static_cast<std::size_t>(n);
    if (!direct) {
      if (got > max_bytes - used)
        throw format_error(name + ": file is larger than the " + std::to_string(max_bytes) +
                           "-byte limit");
      bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + n);
    }
    used += got;
  }
  bytes.resize(used);
  return bytes;
}

/// Replaces `path` with `bytes` so that a crash or an error at any moment leaves either the
/// old file or the new one, never a mixture: the bytes go to a temporary in the same
/// directory (same file system, so rename is atomic), are fsync'ed, renamed over `path`,
/// and the directory is fsync'ed so that the rename itself survives a power loss. On any
/// failure the temporary is removed and io_error says why; the old file is untouched
/// unless the rename succeeded. The new file gets the mode of any newly created file
/// (0666 & ~umask), not the 0600 of mkstemp: the temporary is created with open(O_EXCL,
/// 0666) under a random name, so the kernel applies the umask itself (reading the umask
/// with umask() would briefly change it for every thread of the process).
inline void write_file_atomically(const std::filesystem::path& path,
                                  std::span<const std::byte> bytes) {
  const std::string name = path.string();
  const std::filesystem::path file_name = path.filename();
  if (file_name.empty() || file_name == "." || file_name == "..")
    throw io_error(name + ": not a file name");
  const std::filesystem::path directory =
      path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();

  std::string temporary;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    // Appended piece by piece: GCC 12 at -O2 and above reports a false -Wrestrict in
    // operator+(const char*, std::string&&) (GCC bug 105329), which a user's -Werror build
    // of this header would turn into an error.
    std::string leaf = ".";
    leaf += file_name.string();
    leaf += ".tmp.";
    leaf += detail::temporary_suffix();
    temporary = (directory / leaf).string();
    fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST && errno != EINTR)
      throw io_error(name + ": cannot create a temporary file in " + directory.string() + ": " +
                     detail::errno_text(errno));
  }
  if (fd < 0)
    throw io_error(name + ": cannot create a temporary file in " + directory.string() +
                   ": every name tried exists");

  detail::FdGuard guard(fd);
  auto fail = [&](const std::string& step, int code) {
    if (guard.get() >= 0) guard.close_now();
    ::unlink(temporary.c_str());
    throw io_error(name + ": " + step + " (temporary " + temporary +
                   "): " + detail::errno_text(code));
  };
  if (int code = detail::write_all(fd, bytes.data(), bytes.size())) fail("cannot write", code);
  if (::fsync(fd) != 0) fail("cannot sync", errno);
  if (int code = guard.close_now()) fail("cannot close", code);
  if (::rename(temporary.c_str(), name.c_str()) != 0) fail("cannot rename over the target", errno);

  int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    throw io_error(name + ": written, but its directory cannot be opened to sync it: " +
                   detail::errno_text(errno));
  detail::FdGuard dir_guard(dir_fd);
  // Some file systems cannot sync a directory (EINVAL); there is nothing more to do there.
  if (::fsync(dir_fd) != 0 && errno != EINVAL && errno != EROFS)
    throw io_error(name +
                   ": written, but its directory cannot be synced: " + detail::errno_text(errno));
}

}  // namespace locus::io

// A file descriptor with positioned reads and writes that retry on EINTR and short transfers (a zero-byte one throws),
// and errors that name the file and what was being read or written. Shared by checkpoint I/O (tensor_io.cc) and GGUF
// conversion (dequant.cc): both read validated ranges of one file and write another, off the JS thread.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace llamapro {

class PosixFile {
 public:
  PosixFile(const std::string& path, int flags, mode_t mode = 0) : path_(path) {
    do {
      fd_ = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
  }
  ~PosixFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  PosixFile(const PosixFile&) = delete;
  PosixFile& operator=(const PosixFile&) = delete;

  int64_t Size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw std::runtime_error(path_ + ": cannot stat (" + std::strerror(errno) + ")");
    return static_cast<int64_t>(st.st_size);
  }

  void ReadAt(void* into, int64_t nbytes, int64_t offset, const std::string& what) const {
    auto* out = static_cast<char*>(into);
    while (nbytes > 0) {
      const size_t chunk = static_cast<size_t>(std::min<int64_t>(nbytes, int64_t{1} << 30));
      const ssize_t got = ::pread(fd_, out, chunk, static_cast<off_t>(offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(path_ + ": reading " + what + " failed (" + std::strerror(errno) + ")");
      }
      if (got == 0) {
        throw std::runtime_error(path_ + ": unexpected end of file while reading " + what +
                                 " (was it truncated while being read?)");
      }
      out += got;
      nbytes -= got;
      offset += got;
    }
  }

  void WriteAt(const void* from, int64_t nbytes, int64_t offset, const std::string& what) const {
    const auto* in = static_cast<const char*>(from);
    while (nbytes > 0) {
      // Bounded writes let the kernel's writeback keep pace instead of stalling one huge call.
      const size_t chunk = static_cast<size_t>(std::min<int64_t>(nbytes, int64_t{16} << 20));
      const ssize_t put = ::pwrite(fd_, in, chunk, static_cast<off_t>(offset));
      if (put < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(path_ + ": writing " + what + " failed (" + std::strerror(errno) + ")");
      }
      // pwrite may legally write nothing without an error; retrying would loop forever.
      if (put == 0) {
        throw std::runtime_error(path_ + ": writing " + what + " made no progress (0 bytes written at offset " +
                                 std::to_string(offset) + ")");
      }
      in += put;
      nbytes -= put;
      offset += put;
    }
  }

  void Truncate(int64_t size) const {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      throw std::runtime_error(path_ + ": cannot set the size (" + std::strerror(errno) + ")");
    }
  }

  void Advise(int advice) const { ::posix_fadvise(fd_, 0, 0, advice); }

  void Close() {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw std::runtime_error(path_ + ": closing failed (" + std::strerror(errno) + ")");
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace llamapro

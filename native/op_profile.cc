#include "op_profile.h"

#include <ATen/record_function.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace llamapro {
namespace {

struct Frame {
  const char* name;
  int64_t start_ns;
  int64_t children_ns;
};

struct Totals {
  int64_t self_ns = 0;
  int64_t total_ns = 0;
  int64_t calls = 0;
};

thread_local std::vector<Frame> t_stack;
std::mutex g_mutex;
std::map<std::string, Totals> g_totals;

// 'wall' (LLAMAPRO_PROFILE_OPS=wall) reads the monotonic clock instead: with several threads, where the step's wall
// time goes (a GEMM shared by two BLAS threads costs half its CPU time in wall time, a serial op all of it).
clockid_t g_clock = CLOCK_THREAD_CPUTIME_ID;

int64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(g_clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::unique_ptr<at::ObserverContext> OnStart(const at::RecordFunction& fn) {
  t_stack.push_back({fn.name(), ThreadCpuNs(), 0});
  return nullptr;
}

void OnEnd(const at::RecordFunction&, at::ObserverContext*) {
  if (t_stack.empty()) return;  // started before the profile did
  const Frame frame = t_stack.back();
  t_stack.pop_back();
  const int64_t total = ThreadCpuNs() - frame.start_ns;
  if (!t_stack.empty()) t_stack.back().children_ns += total;
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& totals = g_totals[frame.name];
  totals.self_ns += total - frame.children_ns;
  totals.total_ns += total;
  totals.calls += 1;
}

}  // namespace

std::unique_ptr<StepOpProfile> StepOpProfile::Start(OpProfileMode mode) {
  if (mode == OpProfileMode::kOff) return nullptr;
  g_clock = mode == OpProfileMode::kWall ? CLOCK_MONOTONIC : CLOCK_THREAD_CPUTIME_ID;
  return std::unique_ptr<StepOpProfile>(new StepOpProfile());
}

StepOpProfile::StepOpProfile() {
  t_stack.clear();
  handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&OnStart, &OnEnd).needsInputs(false));
}

StepOpProfile::~StepOpProfile() {
  at::removeCallback(handle_);
  std::map<std::string, Totals> totals;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    totals.swap(g_totals);
  }
  std::vector<std::pair<std::string, Totals>> rows(totals.begin(), totals.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.self_ns > b.second.self_ns; });
  int64_t all = 0;
  for (const auto& row : rows) all += row.second.self_ns;
  std::fprintf(stderr, "llamapro op profile: %.1f ms %s in operators\n", static_cast<double>(all) / 1e6,
               g_clock == CLOCK_MONOTONIC ? "wall time" : "thread CPU time");
  std::fprintf(stderr, "%-64s %10s %7s %10s %7s\n", "operator", "self ms", "self %", "total ms", "calls");
  for (size_t i = 0; i < rows.size() && i < 30; ++i) {
    const auto& t = rows[i].second;
    std::fprintf(stderr, "%-64.64s %10.1f %6.1f%% %10.1f %7lld\n", rows[i].first.c_str(),
                 static_cast<double>(t.self_ns) / 1e6,
                 all > 0 ? 100.0 * static_cast<double>(t.self_ns) / static_cast<double>(all) : 0.0,
                 static_cast<double>(t.total_ns) / 1e6, static_cast<long long>(t.calls));
  }
  for (const auto& row : rows) {
    if (row.first.rfind("llamapro::", 0) == 0) {
      std::fprintf(stderr, "%-64.64s total %10.1f ms\n", row.first.c_str(),
                   static_cast<double>(row.second.total_ns) / 1e6);
    }
  }
}

}  // namespace llamapro

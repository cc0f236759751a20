// libtorch's profiler (Kineto over CUPTI) for torch/src/profile.rs: the time every device
// kernel took while it was on, summed per kernel name. tch does not bind the profiler.
//
// The shims' error convention (message.h): every C++ exception is caught and returned as a
// malloc'd message (NULL: success), freed by Rust with `peirce_dist_free_error`.

#include <cstdint>
#include <exception>
#include <map>
#include <stdexcept>
#include <set>
#include <string>
#include <utility>

#include <torch/csrc/autograd/profiler_kineto.h>

#include "message.h"

namespace {
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

ProfilerConfig config() {
  return ProfilerConfig(ProfilerState::KINETO);
}

std::set<ActivityType> activities() {
  return {ActivityType::CPU, ActivityType::CUDA};
}
}  // namespace

extern "C" {

// Starts recording (an error if the profiler is already on, or cannot start).
char* peirce_profile_start() {
  return peirce_guarded(
      [] {
        torch::autograd::profiler::prepareProfiler(config(), activities());
        torch::autograd::profiler::enableProfiler(config(), activities());
      },
      "unknown C++ exception starting the profiler");
}

// Stops recording; `*table` gets the device events since `start` summed per name, one line
// each: `calls<TAB>nanoseconds<TAB>name` (tabs and newlines in names become spaces), in
// malloc'd memory the caller frees with `peirce_dist_free_error`.
char* peirce_profile_stop(char** table) {
  *table = nullptr;
  return peirce_guarded(
      [&] {
        auto result = torch::autograd::profiler::disableProfiler();
        std::map<std::string, std::pair<uint64_t, uint64_t>> kernels;
        for (const auto& event : result->events()) {
          if (event.deviceType() != c10::DeviceType::CUDA) {
            continue;
          }
          auto& entry = kernels[event.name()];
          entry.first += 1;
          entry.second += event.durationNs();
        }
        std::string text;
        for (const auto& [name, entry] : kernels) {
          std::string clean = name;
          for (auto& c : clean) {
            if (c == '\t' || c == '\n' || c == '\r') {
              c = ' ';
            }
          }
          text += std::to_string(entry.first) + "\t" + std::to_string(entry.second) + "\t" +
                  clean + "\n";
        }
        *table = peirce_message(text);
        if (*table == peirce_no_memory) {
          *table = nullptr;
          throw std::runtime_error("out of memory for the profiler's table");
        }
      },
      "unknown C++ exception stopping the profiler");
}

}  // extern "C"

// A debugging aid for speed work: with the kernel option profileOps 'cpu' (LLAMAPRO_PROFILE_OPS=1), every training
// step prints to stderr a table of the LibTorch operators it ran, by self *thread CPU time* (an operator's time minus
// that of the operators it called), with the step's named phases (llamapro::forward_and_loss, ::backward, ::update,
// ::checkpoint_recompute). CPU time, not wall time, because the machines this is tuned on are shared: with one
// intra-op and one BLAS thread (OPENBLAS_NUM_THREADS=1) all of a step's work runs on the calling thread, and its CPU
// time is what the step costs whatever else the machine runs. 'wall' (LLAMAPRO_PROFILE_OPS=wall) reads the monotonic
// clock instead: with several threads, where the step's wall time goes. On a GPU the table shows only the host's
// side (launches), not the kernels.
#pragma once

#include <cstdint>
#include <memory>

#include "kernel_options.h"

namespace llamapro {

class StepOpProfile {
 public:
  // Starts recording by the mode's clock (null when it is kOff); the table is printed when it is destroyed.
  static std::unique_ptr<StepOpProfile> Start(OpProfileMode mode);
  ~StepOpProfile();

 private:
  StepOpProfile();
  uint64_t handle_;
};

}  // namespace llamapro

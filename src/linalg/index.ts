/** src/linalg: fast GEMM through ONNX Runtime, Gram/channel statistics, Cholesky, triangular solves, SVD. */
export { type FloatArray, releaseKernels } from './backend.js';
export { type GemmOptions, gemmAccumulate, matmul, matmulJs } from './gemm.js';
export { GramAccumulator, gram } from './gram.js';
export { AbsMaxAccumulator, SumSquaresAccumulator } from './channel-stats.js';
export {
  NotPositiveDefiniteError,
  cholesky,
  choleskyInverse,
  choleskySolve,
  dampen,
  fixDeadColumns,
  hessianInverseUpperCholesky,
  zeroColumns,
} from './cholesky.js';
export { invertLower, solveLower, solveUpper } from './triangular.js';
export { type Svd, type TruncatedSvd, type TruncatedSvdOptions, svd, symmetricEigen, truncatedSvd } from './svd.js';

/**
 * QFT, quantization-aware finetuning (arXiv 2212.02634): joint end-to-end training of every
 * quantization degree of freedom of a PTQ result by distillation from the float model.
 */
export {
  finetune,
  finetuneImages,
  learningRate,
  QFT_DEFAULTS,
  qdqBiases,
  type FinetuneOptions,
  type FinetuneResult,
  type LrSchedule,
} from './finetune.js';
export {
  buildStudent,
  logitsOf,
  TRAINED_GROUPS,
  type TrainedGroup,
  type LossKind,
  type Student,
  type StudentLayer,
  type StudentActivation,
  type StudentOptions,
} from './student.js';
export { exportStudent, trainedShifts } from './export.js';
export { decodeImages, ImageSet } from '../data/images.js';
export { TeacherTargets } from './teacher.js';
export { loadCheckpoint, saveCheckpoint, type Checkpoint, type QftProgress } from './checkpoint.js';

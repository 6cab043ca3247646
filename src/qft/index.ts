/**
 * QFT, quantization-aware finetuning (arXiv 2212.02634): joint end-to-end training of every
 * quantization degree of freedom of a PTQ result by distillation from the float model.
 */
export { finetune, finetuneImages, qdqBiases, type FinetuneOptions, type FinetuneResult } from './finetune.js';
export { buildStudent, logitsOf, type Student, type StudentLayer, type StudentActivation, type StudentOptions } from './student.js';
export { exportStudent } from './export.js';
export { decodeImages, ImageSet } from './images.js';
export { teacherLogits } from './teacher.js';

// Batch jobs: a model run over every line of a JSONL file of tensors, kept in JetStream so a job
// survives the crash of the process running it (`flotilla submit`, `flotilla job`).
export {
  DEFAULT_JOB_CONCURRENCY,
  DEFAULT_MAX_JOB_RESULT_BYTES,
  JOB_RETENTION_MS,
  getJob,
  jobStatus,
  resumeJob,
  submitJob,
  type JobLineResult,
  type JobProgress,
  type JobRunOptions,
  type JobStatus,
  type JobSummary,
  type ResumeJobOptions,
  type SubmitJobOptions,
} from './jobs.js';
export { MAX_JOB_LINE_BYTES } from './job-lines.js';
export { defaultJobStateDir, type JobMeta } from './job-records.js';

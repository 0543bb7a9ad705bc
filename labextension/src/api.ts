/**
 * The raytha_nb REST API (`<base_url>/raytha-nb/api/`) as typed calls.
 *
 * Every call goes through Jupyter's ServerConnection so it carries the same
 * authentication (token header, XSRF cookie) as the rest of JupyterLab.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type TaskStatus =
  | 'scheduled'
  | 'awaiting'
  | 'enqueued'
  | 'processing'
  | 'complete'
  | 'error'
  | 'cancelled'
  | 'interrupted';

export const STATUSES: TaskStatus[] = [
  'scheduled',
  'awaiting',
  'enqueued',
  'processing',
  'complete',
  'error',
  'cancelled',
  'interrupted'
];

/** `TaskRecord.to_json()`: the shape of a task everywhere in the API. */
export interface ITask {
  id: string;
  name: string;
  task: string;
  args: unknown;
  status: TaskStatus;
  task_step: number;
  status_info: string | null;
  percent_complete: number;
  error_type: string | null;
  error_message: string | null;
  traceback: string | null;
  result: unknown;
  result_kind: string | null;
  created_at: string | null;
  started_at: string | null;
  completed_at: string | null;
  heartbeat_at: string | null;
  updated_at: string | null;
  kernel_id: string | null;
  notebook: string | null;
  cancel_requested: boolean;
  /** Where it runs; absent or null for tasks of older kernels (and older saved notebooks). */
  executor?: TaskExecutor | null;
  /** The worker running it ("pid 1234", "tcp://127.0.0.1:40123", "thread raytha-nb-worker-2"); null until it starts. */
  worker?: string | null;
  /** 1-based attempt and how many are allowed (retries + 1); absent on older records. */
  attempt?: number;
  max_attempts?: number;
  /** When a `scheduled` task is due (a delay, or the next retry attempt). */
  scheduled_for?: string | null;
  /** The tasks an `awaiting` task waits for (`after=`). */
  depends_on?: string[] | null;
  /** The group task (`rnb.map`) this task is a child of. */
  group_id?: string | null;
  /** The task this one re-runs (`rnb.retry`, the Retry button). */
  retry_of?: string | null;
  /** The last `ctx.checkpoint(state)`: small JSON. */
  checkpoint?: unknown;
  options?: Record<string, unknown> | null;
  /** The schedule this task is a run of (`rnb.schedule`); null for other tasks. */
  schedule_id?: string | null;
}

/** `TaskRecord.executor`: where a task runs (`rnb.enqueue(..., executor=...)`). */
export type TaskExecutor = 'thread' | 'process' | 'dask' | 'server';

/** An `event: progress` of the events stream: only a running task's progress moved. */
export interface ITaskProgress {
  id: string;
  task_step: number;
  status_info: string | null;
  percent_complete: number;
  heartbeat_at: string | null;
  updated_at: string | null;
}

export interface ITaskPage {
  tasks: ITask[];
  total: number;
  offset: number;
  limit: number;
  next_offset: number | null;
}

export interface ILogLine {
  task_id: string;
  seq: number;
  ts: string;
  stream: string;
  text: string;
}

export interface IServerStatus {
  version: string;
  tasks: { processing: number; enqueued: number };
  db: string;
}

/** Result kinds stored as a file on the server, downloadable as such. */
export const FILE_RESULT_KINDS = new Set(['file', 'parquet', 'pickle']);

/** Not finished: waiting (for a time, other tasks or a worker) or running. */
export const ACTIVE_STATUSES: ReadonlySet<TaskStatus> = new Set<TaskStatus>([
  'scheduled',
  'awaiting',
  'enqueued',
  'processing'
]);

export function isActive(task: ITask): boolean {
  return ACTIVE_STATUSES.has(task.status);
}

/** Waiting for a time (`scheduled`) or for other tasks (`awaiting`): not yet queued. */
export function isWaiting(task: ITask): boolean {
  return task.status === 'scheduled' || task.status === 'awaiting';
}

/** An error the API answered with, or a failure to reach it at all. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** The answer was a JSON error (`{"message", "reason"}`), as raytha_nb's routes send. */
    readonly fromApi = false
  ) {
    super(message);
  }

  /**
   * True when the Jupyter server answered but has no raytha_nb routes: its own 404
   * page for an unknown URL (HTML). raytha_nb's own 404s (an unknown task, a result
   * file gone) are JSON errors.
   */
  get notInstalled(): boolean {
    return this.status === 404 && !this.fromApi;
  }

  /** True when no HTTP answer came back at all. */
  get unreachable(): boolean {
    return this.status === 0;
  }
}

export class TasksApi {
  constructor(
    readonly settings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** Absolute URL of an API path, with optional query parameters. */
  url(path: string, query: Record<string, string | number | undefined> = {}): string {
    const base = URLExt.join(this.settings.baseUrl, 'raytha-nb', 'api', path);
    const params = Object.entries(query)
      .filter(([, v]) => v !== undefined && v !== '')
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
    return params.length ? `${base}?${params.join('&')}` : base;
  }

  /**
   * The events stream URL. EventSource cannot send headers: it relies on
   * Jupyter's login cookie, and on the token in the query when Lab has one.
   */
  eventsUrl(): string {
    const token = this.settings.token;
    return this.url('events', token ? { token } : {});
  }

  async fetch(path: string, init: RequestInit = {}, query = {}): Promise<Response> {
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(this.url(path, query), init, this.settings);
    } catch (err) {
      throw new ApiError(`The Jupyter server cannot be reached (${String(err)}).`, 0);
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      let fromApi = false;
      try {
        const body = (await response.json()) as { message?: unknown } | null;
        if (body && typeof body.message === 'string') {
          message = body.message || message;
          fromApi = true;
        }
      } catch {
        // Not JSON: Jupyter's own error page (e.g. its 404 when the extension is absent).
      }
      throw new ApiError(message, response.status, fromApi);
    }
    return response;
  }

  async json<T>(path: string, init: RequestInit = {}, query = {}): Promise<T> {
    const response = await this.fetch(path, init, query);
    return (await response.json()) as T;
  }

  status(): Promise<IServerStatus> {
    return this.json<IServerStatus>('status');
  }

  listTasks(
    query: { offset?: number; limit?: number; status?: string; q?: string; schedule_id?: string } = {}
  ) {
    return this.json<ITaskPage>('tasks', {}, query);
  }

  getTask(id: string): Promise<ITask> {
    return this.json<ITask>(`tasks/${encodeURIComponent(id)}`);
  }

  cancel(id: string): Promise<{ cancel_requested: boolean; task: ITask }> {
    return this.json(`tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  async remove(id: string): Promise<void> {
    await this.fetch(`tasks/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  clearFinished(): Promise<{ deleted: number }> {
    return this.json('tasks', { method: 'DELETE' }, { finished: 'true' });
  }

  logs(id: string, since: number): Promise<{ lines: ILogLine[]; last_seq: number }> {
    return this.json(`tasks/${encodeURIComponent(id)}/logs`, {}, { since });
  }

  /**
   * The URL of a task's result file, for a plain link: the browser's download manager
   * streams it to disk (with progress) instead of the page holding it in memory. The
   * login cookie authenticates it; the token goes in the query too when Lab has one.
   */
  resultUrl(task: ITask): string {
    const token = this.settings.token;
    return this.url(`tasks/${encodeURIComponent(task.id)}/result`, token ? { token } : {});
  }

  /** The first rows of a table (Parquet) result, with its columns and total row count. */
  preview(id: string, rows = PREVIEW_ROWS): Promise<IResultPreview> {
    return this.json(`tasks/${encodeURIComponent(id)}/result/preview`, {}, { rows });
  }

  /** Start a finished task again in its own kernel (see `POST tasks/{id}/rerun`). */
  rerun(id: string): Promise<IRerun> {
    return this.json(`tasks/${encodeURIComponent(id)}/rerun`, { method: 'POST' });
  }

  /** Run a finished task again as a new task, `retry_of` it (see `POST tasks/{id}/retry`). */
  retry(id: string): Promise<IRetry> {
    return this.json(`tasks/${encodeURIComponent(id)}/retry`, { method: 'POST' });
  }

  listSchedules(): Promise<{ schedules: ISchedule[] }> {
    return this.json('schedules');
  }

  /** `POST schedules/{id}/pause` or `resume`: the schedule as it is now. */
  setPaused(id: string, paused: boolean): Promise<ISchedule> {
    const verb = paused ? 'pause' : 'resume';
    return this.json(`schedules/${encodeURIComponent(id)}/${verb}`, { method: 'POST' });
  }

  /** Run a schedule now (`POST schedules/{id}/trigger`): the schedule and its new run. */
  triggerSchedule(id: string): Promise<{ schedule: ISchedule; task: ITask }> {
    return this.json(`schedules/${encodeURIComponent(id)}/trigger`, { method: 'POST' });
  }

  /** A schedule's latest firings, newest first: runs started, runs skipped and why. */
  scheduleEvents(id: string, limit = 50): Promise<{ events: IScheduleEvent[] }> {
    return this.json(`schedules/${encodeURIComponent(id)}/events`, {}, { limit });
  }

  async deleteSchedule(id: string): Promise<void> {
    await this.fetch(`schedules/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  /** A notebook's parameters (its cell tagged `parameters`, read as papermill does). */
  notebookParameters(path: string): Promise<INotebookParameters> {
    return this.json('notebook-jobs/parameters', {}, { path });
  }

  /** Run a notebook as a server task (`POST notebook-jobs`): the new task. */
  submitNotebookJob(job: INotebookJob): Promise<ITask> {
    return this.json('notebook-jobs', { method: 'POST', body: JSON.stringify(job) });
  }

  /**
   * The URL that downloads a file under the server's root (Jupyter's `/files/`), for a
   * plain link: the cookie authenticates it, and the token when Lab has one.
   */
  filesUrl(path: string): string {
    const url = URLExt.join(this.settings.baseUrl, 'files', URLExt.encodeParts(path));
    const token = this.settings.token;
    // download=1: the server sends it as an attachment, named as the file.
    return `${url}?download=1${token ? `&token=${encodeURIComponent(token)}` : ''}`;
  }
}

/** `last_run` of a schedule: its latest run, as a task id and the status it had. */
export interface IScheduleRun {
  task_id: string;
  status: TaskStatus;
  at: string | null;
}

/** One firing of a schedule (`GET schedules/{id}/events`). */
export interface IScheduleEvent {
  ts: string;
  /** The fire time it was for (null for a Run now). */
  due: string | null;
  /** `run`: a run started; `skipped`: the last one still ran (overlap="skip"); `missed`: due while the server was down. */
  event: string;
  task_id: string | null;
  reason: string | null;
}

/** A recurring task (`rnb.schedule`), as `GET schedules` and the `schedule` event carry it. */
export interface ISchedule {
  id: string;
  name: string;
  /** A notebook's contents path or a "module:function" reference. */
  task: string;
  kind: 'function' | 'notebook';
  args: unknown;
  cron: string | null;
  every: number | null;
  tz: string | null;
  start_at: string | null;
  end_at: string | null;
  overlap: string;
  misfire: string;
  options: Record<string, unknown> | null;
  paused: boolean;
  created_at: string | null;
  /** When it fires next; null while paused or once past `end_at`. */
  next_run: string | null;
  /** The rule in words ("every day at 06:00, Europe/Berlin"), from the server. */
  rule: string;
  last_run: IScheduleRun | null;
  runs: number;
  skipped: number;
}

/** One parameter of a notebook's `parameters` cell. */
export interface INotebookParameter {
  name: string;
  /** Its default as the cell's source text (`"2026-12-01"`, `10`, `[1, 2]`). */
  default: string;
  /** The type papermill infers ("int", "str") or annotates; null when unknown. */
  type: string | null;
  help: string;
}

/** `GET notebook-jobs/parameters?path=`. */
export interface INotebookParameters {
  path: string;
  kernel: string;
  parameters: INotebookParameter[];
}

/** The body of `POST notebook-jobs`. */
export interface INotebookJob {
  path: string;
  parameters: Record<string, unknown>;
  name?: string;
  options?: Record<string, unknown>;
}

/** A finished notebook job's result: the executed notebook and its HTML copy (contents paths). */
export interface INotebookResult {
  notebook: string;
  html: string | null;
}

/** The executed notebook of a complete notebook job, or null for other tasks. */
export function notebookResult(task: ITask): INotebookResult | null {
  if (task.status !== 'complete' || !task.result || typeof task.result !== 'object') {
    return null;
  }
  const result = task.result as Record<string, unknown>;
  if (typeof result.notebook !== 'string' || !result.notebook.endsWith('.ipynb')) {
    return null;
  }
  return {
    notebook: result.notebook,
    html: typeof result.html === 'string' ? result.html : null
  };
}

/** Rows a details view shows of a table result. */
export const PREVIEW_ROWS = 20;

/** `GET tasks/{id}/result/preview`. */
export interface IResultPreview {
  columns: { name: string; type: string }[];
  rows: unknown[][];
  total_rows: number;
  shown: number;
}

/** `POST tasks/{id}/rerun`: the new task's id (null for a cell: it comes by events). */
export interface IRerun {
  rerun_of: string;
  id: string | null;
  kernel_id: string;
  queued: boolean;
}

/** `POST tasks/{id}/retry`: the new task (in the task's kernel, or on the server). */
export interface IRetry {
  retry_of: string;
  id: string | null;
  ran_in: 'kernel' | 'server';
  kernel_id: string | null;
  queued: boolean;
  task?: ITask;
}

/** Whether a task's result is a table the server can preview. */
export function isTable(task: ITask): boolean {
  if (task.status !== 'complete') {
    return false;
  }
  if (task.result_kind === 'parquet') {
    return true;
  }
  const stored = (task.result ?? {}) as Record<string, unknown>;
  const name = String(stored.filename ?? stored.path ?? '');
  return (
    task.result_kind === 'file' &&
    (stored.media_type === 'application/vnd.apache.parquet' || name.endsWith('.parquet'))
  );
}

/** Tasks of the built-in data jobs: their inputs lived in the kernel's memory. */
const DATA_JOBS = new Set(['export', 'sql', 'import_csv']);

/**
 * Why a finished task cannot be retried (`POST tasks/{id}/retry`), or null if it may be:
 * the server says why in its 409 for the cases it can only tell itself.
 */
export function retryBlocker(task: ITask): string | null {
  if (isActive(task)) {
    return 'It has not finished';
  }
  if (DATA_JOBS.has(task.task)) {
    return `Started by raytha_nb.${task.task}(), whose inputs lived in the kernel's memory: run its cell again`;
  }
  return null;
}

/**
 * Why a finished task cannot be re-run from the panel, or null if it can: it runs
 * again only in its own kernel (the registry and the cell's namespace live there),
 * and only a task whose inputs were stored (args) can be started again.
 */
export function rerunBlocker(task: ITask, kernelAlive: (id: string) => boolean): string | null {
  if (isActive(task)) {
    return 'It is still running';
  }
  if (DATA_JOBS.has(task.task)) {
    return `Started by raytha_nb.${task.task}(), whose inputs lived in the kernel's memory: run its cell again`;
  }
  if (!task.kernel_id || !kernelAlive(task.kernel_id)) {
    return 'Its kernel is not running on this server: open its notebook and run it there';
  }
  return null;
}

/** Small text helpers for showing tasks. */
import { ITask, TaskStatus } from './api';

export const STATUS_GLYPH: Record<TaskStatus, string> = {
  scheduled: '◔', // a timer (⏲ is missing from the fonts Lab falls back to)
  awaiting: '⊶', // linked to its parents
  enqueued: '◷',
  processing: '⟳',
  complete: '✓',
  error: '✗',
  cancelled: '⊘',
  interrupted: '⚠'
};

// count, byteSize and logTitle mirror raytha_nb/_text.py word for word (same text for the
// same number; tests/test_text_forms.py runs both on one table).
const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** "1 line", "2 lines", "1,234 rows": a number with its noun, plural when not 1. */
export function count(n: number, singular: string, plural?: string): string {
  return `${n.toLocaleString('en')} ${n === 1 ? singular : (plural ?? `${singular}s`)}`;
}

/** A size in binary units, labelled as such: "512 B", "1.0 KiB", "611.3 MiB". */
export function byteSize(n: number): string {
  if (n < 1024) {
    return `${Math.trunc(n)} B`;
  }
  let value = n;
  for (const unit of UNITS) {
    value /= 1024;
    // Half up on tenths (not toFixed), so Python and TypeScript round alike.
    const tenths = Math.floor(value * 10 + 0.5);
    if (tenths < 10240 || unit === UNITS[UNITS.length - 1]) {
      return `${Math.floor(tenths / 10)}.${tenths % 10} ${unit}`;
    }
  }
  throw new Error('unreachable');
}

/** The log's heading: "Log (3 lines)"; with none, "Log (empty)" once the task ended. */
export function logTitle(lines: number, finished: boolean): string {
  if (lines) {
    return `Log (${count(lines, 'line')})`;
  }
  return finished ? 'Log (empty)' : 'Log (no lines yet)';
}

// duration, waiting and timing mirror raytha_nb/_text.py too (the waits' words and the
// attempt prefix: "attempt 2 of 4, next in 14 s", "starts in 12 s", "waiting for 2 tasks").

/** "0:07", "12:03", "1:02:03"; '' for unknown. */
export function duration(seconds: number | null): string {
  if (seconds === null || seconds < 0) {
    return '';
  }
  const whole = Math.trunc(seconds);
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const secs = String(whole % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${secs}` : `${minutes}:${secs}`;
}

/** "in 14 s" (whole seconds, rounded up), "in 2:03", "now". */
function inTime(seconds: number): string {
  if (seconds <= 0) {
    return 'now';
  }
  return seconds < 60 ? `in ${Math.ceil(seconds)} s` : `in ${duration(seconds)}`;
}

/** What a task that has not started waits for; '' for the others. */
export function waiting(task: ITask, now = Date.now()): string {
  if (task.status === 'scheduled') {
    const left = task.scheduled_for ? (Date.parse(task.scheduled_for) - now) / 1000 : 0;
    const when = inTime(left);
    const attempt = task.attempt ?? 1;
    return attempt > 1 ? `attempt ${attempt} of ${task.max_attempts ?? attempt}, next ${when}` : `starts ${when}`;
  }
  if (task.status === 'awaiting') {
    return `waiting for ${count((task.depends_on ?? []).length, 'task')}`;
  }
  if (task.status === 'enqueued') {
    return 'waiting for a worker';
  }
  return '';
}

/** Seconds left, from elapsed time and percent; null when unknowable (`_text.eta`). */
function etaOf(task: ITask, now: number): number | null {
  const elapsed = durationOf(task, now);
  const pct = task.percent_complete;
  if (isFinished(task) || elapsed === null || pct <= 0 || pct >= 100) {
    return null;
  }
  return (elapsed * (100 - pct)) / pct;
}

/**
 * "0:12 elapsed, ~0:05 left" (or "took 0:17" once finished), a later attempt's
 * "attempt 2 of 4, 0:12 elapsed", or what a waiting task waits for.
 */
export function timing(task: ITask, now = Date.now()): string {
  const waits = waiting(task, now);
  if (waits) {
    return waits;
  }
  const elapsed = duration(durationOf(task, now));
  if (!elapsed) {
    return '';
  }
  if (isFinished(task)) {
    return `took ${elapsed}`;
  }
  const left = etaOf(task, now);
  let text = `${elapsed} elapsed${left !== null ? `, ~${duration(left)} left` : ''}`;
  const attempt = task.attempt ?? 1;
  if (attempt > 1) {
    text = `attempt ${attempt} of ${task.max_attempts ?? attempt}, ${text}`;
  }
  return text;
}

/** "attempt 2 of 4" for a task with retries; '' when it has none. */
export function attemptText(task: ITask): string {
  const max = task.max_attempts ?? 1;
  return max > 1 ? `attempt ${task.attempt ?? 1} of ${max}` : '';
}

const FINISHED = new Set<TaskStatus>(['complete', 'error', 'cancelled', 'interrupted']);

function isFinished(task: ITask): boolean {
  return FINISHED.has(task.status);
}

/** "4.2s", "1m 05s", "2h 03m". */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) {
    return `${Math.max(0, seconds).toFixed(1)}s`;
  }
  const s = Math.floor(seconds);
  if (s < 3600) {
    return `${Math.floor(s / 60) ? `${Math.floor(s / 60)}m ` : ''}${String(s % 60).padStart(
      Math.floor(s / 60) ? 2 : 1,
      '0'
    )}s`;
  }
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Seconds the task has run (so far, or in all), or null before it starts. */
export function durationOf(task: ITask, now = Date.now()): number | null {
  if (!task.started_at) {
    return null;
  }
  const end = task.completed_at ? Date.parse(task.completed_at) : now;
  return (end - Date.parse(task.started_at)) / 1000;
}

/** What the row's time column shows: waiting time, elapsed time or duration. */
export function timeLabel(task: ITask, now = Date.now()): string {
  const duration = durationOf(task, now);
  if (duration === null) {
    return task.created_at ? `queued ${formatSeconds((now - Date.parse(task.created_at)) / 1000)}` : '';
  }
  return formatSeconds(duration);
}

/**
 * Where a task runs, as the widget's details say it (raytha_nb/widgets.py `_where`, same
 * text): "process pid 42", "thread raytha-nb-worker-2", "dask tcp://10.0.0.5:40123".
 * '' when the record does not say (tasks of older kernels).
 */
export function whereText(task: ITask): string {
  const executor = task.executor ?? null;
  const worker = task.worker ?? null;
  if (worker === null) {
    return executor ?? '';
  }
  return executor === null || worker.startsWith(executor) ? worker : `${executor} ${worker}`;
}

/**
 * The details' "Runs on" value: the executor, then its worker without the executor's
 * name repeated ("process · pid 1234", "thread · raytha-nb-worker-2"); '' when unknown.
 */
export function runsOn(task: ITask): string {
  const executor = task.executor ?? null;
  let worker = task.worker ?? null;
  if (executor !== null && worker !== null && worker.startsWith(`${executor} `)) {
    worker = worker.slice(executor.length + 1);
  }
  return [executor, worker].filter(Boolean).join(' · ');
}

/** The list row's badge: the executor, except the default ("thread") and unknown ones. */
export function executorBadge(task: ITask): string {
  const executor = task.executor ?? null;
  return executor === null || executor === 'thread' ? '' : executor;
}

export function basename(path: string | null): string {
  return path ? path.split('/').pop() || path : '';
}

export function percentText(task: ITask): string {
  return `${Math.round(task.percent_complete)}%`;
}

/**
 * A time relative to now: "in 14 s", "in 2:03", "in 5:02:03", "in 3 days, 4 h" ahead
 * (a clock that visibly ticks), "14 s ago", "5 min ago", "3 h ago", "2 days ago" behind.
 */
export function fromNow(iso: string, now = Date.now()): string {
  const seconds = (Date.parse(iso) - now) / 1000;
  if (seconds > 0) {
    const days = Math.floor(seconds / 86400);
    if (days) {
      const hours = Math.floor((seconds % 86400) / 3600);
      return `in ${count(days, 'day')}${hours ? `, ${hours} h` : ''}`;
    }
    return seconds < 60 ? `in ${Math.ceil(seconds)} s` : `in ${duration(seconds)}`;
  }
  const ago = -seconds;
  if (ago < 60) {
    return ago < 1 ? 'just now' : `${Math.floor(ago)} s ago`;
  }
  if (ago < 3600) {
    return `${Math.floor(ago / 60)} min ago`;
  }
  return ago < 86400 ? `${Math.floor(ago / 3600)} h ago` : `${count(Math.floor(ago / 86400), 'day')} ago`;
}

/** A clock time, with the date only when it is not today: "06:00:00", "Dec 3, 06:00". */
export function shortTime(iso: string, now = Date.now()): string {
  const when = new Date(iso);
  const today = new Date(now).toDateString() === when.toDateString();
  return today
    ? when.toLocaleTimeString()
    : when.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function localTime(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

/** A short element builder: tag, class names, text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Small text helpers for showing tasks. */
import { ITask, TaskStatus } from './api';

export const STATUS_GLYPH: Record<TaskStatus, string> = {
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

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

/**
 * Notifications when a task completes, fails or is interrupted, through
 * JupyterLab's Notification API, with an action that opens the task.
 */
import { Notification } from '@jupyterlab/apputils';

import { ITask, isActive } from './api';
import { durationOf, formatSeconds } from './format';
import { ITaskChange, TaskModel } from './model';

export interface INotifySettings {
  /** Notify at all. */
  enabled: boolean;
  /** Skip completions of tasks that ran for less than this many seconds. */
  minDuration: number;
  /** Notify failures and interruptions whatever their duration. */
  alwaysNotifyFailures: boolean;
}

export const DEFAULT_NOTIFY: INotifySettings = {
  enabled: true,
  minDuration: 5,
  alwaysNotifyFailures: true
};

export class TaskNotifier {
  settings: INotifySettings = { ...DEFAULT_NOTIFY };

  constructor(
    readonly model: TaskModel,
    private readonly _open: (id: string) => void
  ) {
    model.taskChanged.connect(this._onChange, this);
  }

  /** Whether this change deserves a notification under the current settings. */
  shouldNotify({ previous, task }: ITaskChange): boolean {
    const ended = ['complete', 'error', 'interrupted'].includes(task.status);
    // Only a transition seen live: a task first seen already finished (e.g. on load) is old news.
    if (!this.settings.enabled || !ended || (previous && !isActive(previous))) {
      return false;
    }
    if (task.status !== 'complete' && this.settings.alwaysNotifyFailures) {
      return true;
    }
    const duration = durationOf(task) ?? 0;
    return duration >= this.settings.minDuration;
  }

  dispose(): void {
    this.model.taskChanged.disconnect(this._onChange, this);
  }

  private _onChange(_: TaskModel, change: ITaskChange): void {
    if (this.shouldNotify(change)) {
      this._show(change.task);
    }
  }

  private _show(task: ITask): void {
    const actions = [
      { label: 'Show task', caption: 'Open it in the Background Tasks panel', callback: () => this._open(task.id) }
    ];
    const took = durationOf(task);
    const after = took === null ? '' : ` after ${formatSeconds(took)}`;
    if (task.status === 'complete') {
      Notification.success(`Task "${task.name}" completed${after}.`, { autoClose: 6000, actions });
    } else if (task.status === 'error') {
      const why = task.error_type ? `: ${task.error_type}: ${task.error_message ?? ''}` : '';
      Notification.error(`Task "${task.name}" failed${why}`, { autoClose: false, actions });
    } else {
      Notification.warning(
        `Task "${task.name}" was interrupted${task.status_info ? `: ${task.status_info}` : ''}.`,
        { autoClose: false, actions }
      );
    }
  }
}

/** What a user can do to a task, shared by the list rows and the details view. */
import { Notification } from '@jupyterlab/apputils';

import { FILE_RESULT_KINDS, ITask, isActive } from './api';
import { TaskModel } from './model';

export interface IAction {
  id: 'cancel' | 'delete' | 'download' | 'open';
  label: string;
  title: string;
  run: () => Promise<void>;
}

/**
 * What the actions of a task depend on. Views rebuild their buttons only when it
 * changes: a button replaced mid-click (progress changes many times a second) would
 * swallow the click.
 */
export function actionsKey(task: ITask): string {
  return `${task.id}|${task.status}|${task.cancel_requested}|${task.result_kind}|${task.notebook}`;
}

export class TaskActions {
  constructor(
    readonly model: TaskModel,
    private readonly _openNotebook: (path: string) => Promise<unknown>
  ) {}

  /** The actions that apply to this task in its current state. */
  for(task: ITask): IAction[] {
    const actions: IAction[] = [];
    if (isActive(task)) {
      actions.push({
        id: 'cancel',
        label: 'Cancel',
        title: task.cancel_requested ? 'Cancel requested; waiting for the task' : 'Cancel this task',
        run: () => this._try('cancel', async () => {
          const { task: updated } = await this.model.api.cancel(task.id);
          this.model.upsert(updated, false);
        })
      });
    } else {
      actions.push({
        id: 'delete',
        label: 'Delete',
        title: 'Delete this task, its log and its result',
        run: () => this._try('delete', async () => {
          await this.model.api.remove(task.id);
          this.model.remove(task.id);
        })
      });
    }
    if (task.status === 'complete' && task.result_kind && FILE_RESULT_KINDS.has(task.result_kind)) {
      actions.push({
        id: 'download',
        label: 'Download',
        title: 'Download the result file',
        run: () => this._try('download', () => this.model.api.download(task))
      });
    }
    if (task.notebook) {
      const path = task.notebook;
      actions.push({
        id: 'open',
        label: 'Open',
        title: `Open the notebook that started it: ${path}`,
        run: () => this._try('open the notebook of', async () => {
          await this._openNotebook(path);
        })
      });
    }
    return actions;
  }

  private async _try(what: string, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (err) {
      Notification.error(`Could not ${what} the task: ${err instanceof Error ? err.message : err}`, {
        autoClose: 8000
      });
    }
  }
}

/** Buttons for a task's actions; `data-action` names them for tests and styles. */
export function actionButtons(actions: IAction[]): HTMLElement[] {
  return actions.map(action => {
    const button = document.createElement('button');
    button.className = `jp-RaythaTask-action jp-mod-${action.id}`;
    button.dataset.action = action.id;
    button.textContent = action.label;
    button.title = action.title;
    button.addEventListener('click', ev => {
      ev.stopPropagation();
      button.disabled = true;
      void action.run().finally(() => {
        button.disabled = false;
      });
    });
    return button;
  });
}

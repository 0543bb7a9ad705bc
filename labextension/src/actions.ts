/** What a user can do to a task, shared by the list rows and the details view. */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';

import {
  FILE_RESULT_KINDS,
  ITask,
  isActive,
  notebookResult,
  rerunBlocker,
  retryBlocker
} from './api';
import { TaskModel } from './model';

export interface IAction {
  id:
    | 'cancel'
    | 'delete'
    | 'download'
    | 'open'
    | 'rerun'
    | 'retry'
    | 'open-result'
    | 'download-html'
    | 'pause'
    | 'resume'
    | 'trigger'
    | 'runs';
  label: string;
  /** A short form for the list rows, where width is scarce (the label is its tooltip). */
  glyph: string;
  title: string;
  run: () => Promise<void>;
  /** For a download: the plain link the browser's own download manager streams. */
  href?: string;
  /** Set when the action is shown but cannot be used: why (its tooltip). */
  disabled?: boolean;
}

/**
 * Ask before deleting: deleted tasks and their result files cannot be brought back.
 * Resolves true only if the user confirmed.
 */
export async function confirmDelete(title: string, body: string, label: string): Promise<boolean> {
  const answer = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })],
    defaultButton: 0
  });
  return answer.button.accept;
}

/** Ask before running a task again; resolves true only if the user confirmed. */
export async function confirmRetry(task: ITask): Promise<boolean> {
  const resume = task.checkpoint !== null && task.checkpoint !== undefined
    ? ', resuming from its last checkpoint'
    : '';
  const answer = await showDialog({
    title: 'Retry this task?',
    body:
      `"${task.name}" (${task.status}) runs again as a new task with the same task, ` +
      `arguments and options${resume}. This one stays as it is.`,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Retry' })],
    defaultButton: 1
  });
  return answer.button.accept;
}

/**
 * What the actions of a task depend on. Views rebuild their buttons only when it
 * changes: a button replaced mid-click (progress changes many times a second) would
 * swallow the click.
 */
export function actionsKey(task: ITask): string {
  return `${task.id}|${task.status}|${task.cancel_requested}|${task.result_kind}|${task.notebook}|${task.kernel_id}`;
}

export class TaskActions {
  constructor(
    readonly model: TaskModel,
    private readonly _openNotebook: (path: string) => Promise<unknown>,
    /** Whether this Jupyter server runs a kernel (re-run asks the task's own kernel). */
    readonly kernelAlive: (id: string) => boolean = () => false
  ) {}

  /** Opens a task's details (the panel sets it): where Retry takes the user. */
  showTask: (id: string) => void = () => undefined;

  /** What the actions of a task depend on, kernels included (see `actionsKey`). */
  key(task: ITask): string {
    return `${actionsKey(task)}|${rerunBlocker(task, this.kernelAlive) ?? ''}`;
  }

  /** Kernels started or stopped: re-run may have become possible or impossible. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Say that kernels changed (the plugin connects the kernel manager to this). */
  kernelsChanged(): void {
    this._changed.emit();
  }

  /** The actions that apply to this task in its current state. */
  for(task: ITask): IAction[] {
    const actions: IAction[] = [];
    if (isActive(task)) {
      actions.push({
        id: 'cancel',
        label: 'Cancel',
        glyph: '■',
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
        glyph: '✕',
        title: 'Delete this task, its log and its result',
        run: () => this._try('delete', async () => {
          const result = task.result_kind && FILE_RESULT_KINDS.has(task.result_kind)
            ? ' and its result file'
            : ' and its result';
          const sure = await confirmDelete(
            'Delete this task?',
            `"${task.name}" (${task.status}) will be deleted with its log${result}. This cannot be undone.`,
            'Delete'
          );
          if (sure) {
            await this.model.api.remove(task.id);
            this.model.remove(task.id);
          }
        })
      });
      const retryNot = retryBlocker(task);
      if (task.task === '%%background') {
        // A cell runs again only in its own kernel (Retry cannot: its code is the cell).
        const blocker = rerunBlocker(task, this.kernelAlive);
        actions.push({
          id: 'rerun',
          label: 'Re-run',
          glyph: '↻',
          title: blocker
            ? `Cannot re-run: ${blocker}`
            : 'Run this cell again in its kernel',
          disabled: blocker !== null,
          run: () => this._try('re-run', async () => {
            const started = await this.model.api.rerun(task.id);
            Notification.info(
              started.queued
                ? `"${task.name}" will start again when its kernel finishes the cell it is running.`
                : `"${task.name}" started again in its kernel.`,
              { autoClose: 4000 }
            );
          })
        });
      } else {
        actions.push({
          id: 'retry',
          label: 'Retry',
          glyph: '⟲',
          title: retryNot
            ? `Cannot retry: ${retryNot}`
            : 'Run this task again as a new task, with the same arguments and options',
          disabled: retryNot !== null,
          run: () => this._try('retry', () => this._retry(task))
        });
      }
    }
    if (task.status === 'complete' && task.result_kind && FILE_RESULT_KINDS.has(task.result_kind)) {
      actions.push({
        id: 'download',
        label: 'Download',
        glyph: '⤓',
        title: 'Download the result file',
        href: this.model.api.resultUrl(task),
        run: async () => undefined // a plain link: the browser downloads it
      });
    }
    if (task.notebook) {
      const path = task.notebook;
      actions.push({
        id: 'open',
        label: 'Open',
        glyph: '↗',
        title: `Open the notebook that started it: ${path}`,
        // The server says where the notebook is now (its path follows renames) or that
        // it is gone: a file that took a deleted notebook's name is another notebook.
        run: () => this._try('open the notebook of', async () => {
          const where = await this.model.api.json<{ path: string }>(
            `tasks/${encodeURIComponent(task.id)}/notebook`
          );
          await this._openNotebook(where.path);
        })
      });
    }
    return actions;
  }

  /**
   * A finished notebook job's executed notebook: open it in Lab, download its HTML copy
   * (Jupyter's `/files/`). Empty for other tasks.
   */
  resultActions(task: ITask): IAction[] {
    const result = notebookResult(task);
    if (!result) {
      return [];
    }
    const actions: IAction[] = [
      {
        id: 'open-result',
        label: 'Open executed notebook',
        glyph: '↗',
        title: `Open the executed notebook: ${result.notebook}`,
        run: () => this._try('open the executed notebook of', async () => {
          await this._openNotebook(result.notebook);
        })
      }
    ];
    if (result.html) {
      actions.push({
        id: 'download-html',
        label: 'Download HTML',
        glyph: '⤓',
        title: `Download the executed notebook as HTML: ${result.html}`,
        href: this.model.api.filesUrl(result.html),
        run: async () => undefined
      });
    }
    return actions;
  }

  /** Ask, POST tasks/{id}/retry, then show the new task (it may come by events later). */
  private async _retry(task: ITask): Promise<void> {
    if (!(await confirmRetry(task))) {
      return;
    }
    const started = await this.model.api.retry(task.id);
    if (started.task) {
      this.model.upsert(started.task, false);
    }
    if (!started.id) {
      Notification.info(
        `"${task.name}" will be retried when its kernel finishes the cell it is running.`,
        { autoClose: 4000 }
      );
      return;
    }
    if (!this.model.get(started.id)) {
      try {
        this.model.upsert(await this.model.api.getTask(started.id), false);
      } catch {
        // Not stored yet: its kernel publishes it within moments; the details wait for it.
      }
    }
    this.showTask(started.id);
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

  private _changed = new Signal<this, void>(this);
}

/**
 * Buttons for a task's actions (a download is a plain link); `data-action` names them
 * for tests and styles. `compact`: glyphs, for the list rows.
 */
export function actionButtons(actions: IAction[], compact = false): HTMLElement[] {
  return actions.map(action => {
    if (action.href) {
      const link = document.createElement('a');
      link.className = `jp-RaythaTask-action jp-mod-${action.id}`;
      link.dataset.action = action.id;
      link.href = action.href;
      link.download = ''; // the server's Content-Disposition names the file
      link.textContent = compact ? action.glyph : action.label;
      link.title = action.title;
      link.setAttribute('aria-label', action.label);
      link.addEventListener('click', ev => ev.stopPropagation());
      return link;
    }
    const button = document.createElement('button');
    button.className = `jp-RaythaTask-action jp-mod-${action.id}`;
    button.dataset.action = action.id;
    button.textContent = compact ? action.glyph : action.label;
    button.title = action.title;
    button.setAttribute('aria-label', action.label);
    if (action.disabled) {
      // Shown, so the user sees it exists, with the reason as its tooltip; not
      // `disabled`, which would hide the tooltip in some browsers.
      button.setAttribute('aria-disabled', 'true');
      button.classList.add('jp-mod-unavailable');
      button.addEventListener('click', ev => ev.stopPropagation());
      return button;
    }
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

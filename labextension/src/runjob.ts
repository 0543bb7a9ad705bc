/**
 * "Run as job…": a notebook as a server task, with its parameters (the cell tagged
 * `parameters`, as papermill reads it) in a form; `POST notebook-jobs` starts it.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { INotebookParameters, ITask } from './api';
import { basename, el } from './format';
import { TaskModel } from './model';

/** What the form gives back: the job's name, the parameters the user changed, options. */
export interface IJobForm {
  name: string;
  parameters: Record<string, unknown>;
  /** `retries` and `timeout` (seconds) where given; the server checks them. */
  options: Record<string, number>;
}

/**
 * A parameter's value from its field: JSON where it parses (`10`, `"text"`, `[1, 2]`,
 * `true`), Python's `True` / `False` / `None` and a plain `'text'`, else the text itself.
 */
export function parameterValue(text: string): unknown {
  const trimmed = text.trim();
  try {
    return JSON.parse(trimmed);
  } catch {
    // not JSON: below
  }
  const python: Record<string, unknown> = { True: true, False: false, None: null };
  if (trimmed in python) {
    return python[trimmed];
  }
  const quoted = /^'([^'\\]*)'$/.exec(trimmed);
  return quoted ? quoted[1] : text;
}

/** The dialog's body: one field per parameter, prefilled with its default, and a name. */
export class JobFormWidget extends Widget implements Dialog.IBodyWidget<IJobForm> {
  constructor(readonly info: INotebookParameters) {
    super();
    this.addClass('jp-RaythaJobForm');
    const stem = basename(info.path).replace(/\.ipynb$/, '');
    const about = el(
      'p',
      'jp-RaythaJobForm-about',
      `Runs ${info.path} as saved on the Jupyter server, in a fresh ` +
        `${info.kernel || 'notebook'} kernel, as a background task: no kernel or browser ` +
        'needs to stay open.'
    );
    this._name = el('input', 'jp-RaythaJobForm-name');
    this._name.value = stem;
    this._name.placeholder = stem;
    this.node.append(about, field('Name', this._name, 'The task’s name in the panel'));
    const options = el('div', 'jp-RaythaJobForm-options');
    for (const [key, label, help] of [
      ['retries', 'Retries', 'Runs again after a failure, up to this many times'],
      ['timeout', 'Timeout (s)', 'Cancelled when it runs longer (empty: never)']
    ] as const) {
      const input = el('input', 'jp-RaythaJobForm-option');
      input.type = 'number';
      input.min = key === 'retries' ? '0' : '1';
      input.dataset.option = key;
      input.placeholder = key === 'retries' ? '0' : 'none';
      options.append(field(label, input, help));
      this._options.push([key, input]);
    }
    this.node.append(options);
    if (!info.parameters.length) {
      this.node.append(
        el(
          'p',
          'jp-RaythaJobForm-note',
          'This notebook has no cell tagged "parameters": it runs as it is.'
        )
      );
      return;
    }
    const group = el('fieldset', 'jp-RaythaJobForm-parameters');
    group.append(
      el('legend', '', 'Parameters'),
      el(
        'p',
        'jp-RaythaJobForm-note',
        'Each value is read as JSON where it parses (10, "text", [1, 2], true; Python\'s ' +
          "True, False, None and 'text' too), else sent as a string. Fields left as they " +
          "are keep the notebook's defaults."
      )
    );
    for (const p of info.parameters) {
      const multiline = p.default.includes('\n');
      const input = multiline ? el('textarea') : el('input');
      input.className = 'jp-RaythaJobForm-value';
      input.value = p.default;
      input.dataset.parameter = p.name;
      input.spellcheck = false;
      if (input instanceof HTMLTextAreaElement) {
        input.rows = Math.min(6, p.default.split('\n').length);
      }
      const label = p.type ? `${p.name} (${p.type})` : p.name;
      group.append(field(label, input, p.help));
      this._fields.push([p.name, p.default, input]);
    }
    this.node.append(group);
  }

  /** The name, and the parameters whose field no longer holds the notebook's default. */
  getValue(): IJobForm {
    const parameters: Record<string, unknown> = {};
    for (const [name, initial, input] of this._fields) {
      if (input.value.trim() !== initial.trim()) {
        parameters[name] = parameterValue(input.value);
      }
    }
    const options: Record<string, number> = {};
    for (const [key, input] of this._options) {
      if (input.value.trim()) {
        options[key] = Number(input.value);
      }
    }
    return { name: this._name.value.trim(), parameters, options };
  }

  /** The first field takes the focus, so typing starts there. */
  protected onAfterAttach(): void {
    const first = this._fields.length ? this._fields[0][2] : this._name;
    requestAnimationFrame(() => first.focus());
  }

  private _name: HTMLInputElement;
  private _fields: [string, string, HTMLInputElement | HTMLTextAreaElement][] = [];
  private _options: [string, HTMLInputElement][] = [];
}

function field(label: string, input: HTMLElement, help: string): HTMLElement {
  const node = el('label', 'jp-RaythaJobForm-field');
  node.append(el('span', 'jp-RaythaJobForm-label', label), input);
  if (help) {
    node.append(el('span', 'jp-RaythaJobForm-help', help));
  }
  return node;
}

/**
 * Ask for a notebook's parameters, start it as a job, and show its task (`show`).
 * Errors (no such notebook, no kernelspec, a refused value) come back as the server
 * words them.
 */
export async function runAsJob(
  model: TaskModel,
  path: string,
  show: (id: string) => void
): Promise<ITask | null> {
  let info: INotebookParameters;
  try {
    info = await model.api.notebookParameters(path);
  } catch (err) {
    Notification.error(`Cannot run ${path} as a job: ${err instanceof Error ? err.message : err}`, {
      autoClose: 8000
    });
    return null;
  }
  const answer = await showDialog({
    title: `Run ${basename(path)} as a job`,
    body: new JobFormWidget(info),
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
    defaultButton: 1,
    focusNodeSelector: '.jp-RaythaJobForm-value, .jp-RaythaJobForm-name'
  });
  if (!answer.button.accept || !answer.value) {
    return null;
  }
  const { name, parameters, options } = answer.value;
  try {
    const task = await model.api.submitNotebookJob({
      path,
      parameters,
      ...(name ? { name } : {}),
      ...(Object.keys(options).length ? { options } : {})
    });
    model.upsert(task, false);
    show(task.id);
    return task;
  } catch (err) {
    Notification.error(`Could not start ${path} as a job: ${err instanceof Error ? err.message : err}`, {
      autoClose: false
    });
    return null;
  }
}

/**
 * raytha-nb: JupyterLab / Notebook 7 front end for raytha_nb's background tasks.
 * One plugin wires the shared task model to the sidebar panel, the status bar
 * item and notifications.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { PageConfig } from '@jupyterlab/coreutils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { TaskActions } from './actions';
import { TaskModel } from './model';
import { DEFAULT_NOTIFY, INotifySettings, TaskNotifier } from './notify';
import { TasksPanel } from './panel';
import { runAsJob } from './runjob';
import { ScheduleModel } from './schedules';
import { TASK_MIME_RANK, taskRendererFactory } from './renderer';
import { TaskStatusItem } from './statusbar';
import { tasksIcon } from './icons';

const PLUGIN_ID = 'raytha-nb:plugin';

export namespace CommandIDs {
  export const open = 'raytha-nb:open-panel';
  export const showTask = 'raytha-nb:show-task';
  export const runAsJob = 'raytha-nb:run-as-job';
  export const showSchedules = 'raytha-nb:show-schedules';
}

/** Notebooks in the file browser: where "Run as job…" is offered. */
const NOTEBOOK_ITEM = '.jp-DirListing-item[data-file-type="notebook"]';

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Background Tasks panel, status bar item and notifications for raytha_nb.',
  autoStart: true,
  optional: [ILayoutRestorer, IStatusBar, ISettingRegistry, ICommandPalette, IRenderMimeRegistry],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    statusBar: IStatusBar | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null,
    rendermime: IRenderMimeRegistry | null
  ) => {
    const model = new TaskModel();
    // Task cell outputs: live from this model's one events stream, ahead of the ipywidget.
    rendermime?.addFactory(taskRendererFactory(model), TASK_MIME_RANK);
    const kernels = app.serviceManager.kernels;
    let running = new Set<string>();
    const actions = new TaskActions(
      model,
      path => app.commands.execute('docmanager:open', { path: serverPath(path) }),
      id => running.has(id) // re-run asks the task's own kernel
    );
    kernels.runningChanged.connect((_, models) => {
      running = new Set(models.map(m => m.id));
      actions.kernelsChanged();
    });
    const schedules = new ScheduleModel(model);
    const panel = new TasksPanel(model, actions, schedules);
    app.shell.add(panel, 'left', { rank: 650, type: 'Background Tasks' });
    restorer?.add(panel, 'raytha-nb-tasks');

    app.commands.addCommand(CommandIDs.open, {
      label: 'Show Background Tasks',
      caption: 'Open the Background Tasks panel',
      icon: tasksIcon,
      execute: () => {
        panel.showList();
        app.shell.activateById(panel.id);
      }
    });
    app.commands.addCommand(CommandIDs.showTask, {
      label: 'Show Background Task',
      execute: args => {
        app.shell.activateById(panel.id);
        panel.showTask(String(args.id));
      }
    });
    app.commands.addCommand(CommandIDs.showSchedules, {
      label: 'Show Schedules',
      caption: 'Open the Schedules view of the Background Tasks panel',
      execute: () => {
        panel.showView('schedules');
        app.shell.activateById(panel.id);
      }
    });
    // From the file browser (its selected notebook) or the palette (the current notebook).
    const jobPath = (args: { source?: unknown; path?: unknown }): string | null => {
      if (typeof args.path === 'string') {
        return args.path;
      }
      const path = args.source === 'filebrowser' ? selectedNotebook(app) : currentPath(app);
      return path && path.endsWith('.ipynb') ? path : null;
    };
    app.commands.addCommand(CommandIDs.runAsJob, {
      label: 'Run as Job…',
      caption: 'Run this notebook on the server as a background task, with its parameters',
      icon: tasksIcon,
      isEnabled: args => jobPath(args) !== null,
      execute: async args => {
        const path = jobPath(args);
        if (path) {
          await runAsJob(model, path, id => {
            app.shell.activateById(panel.id);
            panel.showTask(id);
          });
        }
      }
    });
    app.contextMenu.addItem({
      command: CommandIDs.runAsJob,
      selector: NOTEBOOK_ITEM,
      args: { source: 'filebrowser' },
      rank: 4
    });
    palette?.addItem({ command: CommandIDs.open, category: 'Background Tasks' });
    palette?.addItem({ command: CommandIDs.showSchedules, category: 'Background Tasks' });
    palette?.addItem({ command: CommandIDs.runAsJob, category: 'Background Tasks' });

    const notifier = new TaskNotifier(model, id =>
      void app.commands.execute(CommandIDs.showTask, { id })
    );
    if (settingRegistry) {
      void settingRegistry.load(PLUGIN_ID).then(settings => {
        const apply = () => {
          notifier.settings = {
            ...DEFAULT_NOTIFY,
            ...(settings.composite.notifications as Partial<INotifySettings> | undefined)
          };
        };
        apply();
        settings.changed.connect(apply);
      }, err => console.warn('raytha-nb: could not load settings', err));
    }

    if (statusBar) {
      const item = new TaskStatusItem(model, () => void app.commands.execute(CommandIDs.open));
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 5,
        isActive: () => model.activeCount > 0,
        activeStateChanged: model.activeCountChanged
      });
    }

    void model.connect();
  }
};

/** The path of the document in the main area (a notebook's contents path), if any. */
function currentPath(app: JupyterFrontEnd): string | null {
  const widget = app.shell.currentWidget as (Widget & { context?: { path?: unknown } }) | null;
  const path = widget?.context?.path;
  return typeof path === 'string' ? path : null;
}

/**
 * The notebook selected in the file browser (a right-click selects the item it is on).
 * Read from the browser widget itself: this extension does not depend on the file
 * browser's package.
 */
function selectedNotebook(app: JupyterFrontEnd): string | null {
  for (const widget of app.shell.widgets('left')) {
    const browser = widget as Widget & { selectedItems?: () => Iterable<{ path: string }> };
    if (widget.id === 'filebrowser' && typeof browser.selectedItems === 'function') {
      for (const item of browser.selectedItems()) {
        if (item.path.endsWith('.ipynb')) {
          return item.path;
        }
      }
    }
  }
  return null;
}

/**
 * Kernels report their notebook as an absolute path (JPY_SESSION_NAME); the document
 * manager wants it relative to the server's root directory.
 */
export function serverPath(path: string): string {
  let root = PageConfig.getOption('serverRoot').replace(/\/+$/, '');
  if (!path.startsWith('/') || !root) {
    return path;
  }
  if (root.startsWith('~')) {
    // The server shows its home directory as "~": find the rest of the root in the path.
    const home = /^\/(?:root|home\/[^/]+|Users\/[^/]+)/.exec(path);
    if (!home) {
      return path;
    }
    root = home[0] + root.slice(1);
  }
  return path.startsWith(`${root}/`) ? path.slice(root.length + 1) : path;
}

export default plugin;

/** The panel's sidebar icon (a list with a progress bar), themed by Lab's icon classes. */
import { LabIcon } from '@jupyterlab/ui-components';

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M3 4h18v2H3zM3 10h18v2H3zM3 16h8v2H3z"/>
    <path d="M3 20h18v2H3z" opacity="0.35"/>
    <path d="M3 20h11v2H3z"/>
    <path d="M17.5 13a4.5 4.5 0 1 0 0 9 4.5 4.5 0 0 0 0-9zm.6 4.6-.1 2.4h-1v-3.2l-.1-.1V14.9h1.2z"/>
  </g>
</svg>`;

export const tasksIcon = new LabIcon({ name: 'raytha-nb:tasks', svgstr });

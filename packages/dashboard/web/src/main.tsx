// Entry of the dashboard's browser bundle (built by vite into dist-web, served by server.ts).
import { render } from 'preact';
import { App } from './app.js';
import './style.css';

const root = document.getElementById('app')!;
root.textContent = ''; // the 'Loading…' placeholder
render(<App />, root);

import * as zestor from 'zestor';
import { probe } from '../shared/probe.js';

probe(zestor, 'esbuild');

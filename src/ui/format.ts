/** Human number and time style for output code; defined in the base layer so every layer's messages share it. */
export { formatCount, formatIsoText, formatTime } from '../base/format.js';

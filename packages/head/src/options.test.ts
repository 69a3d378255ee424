import { parseHeadOptions } from './options.js';

describe('head options', () => {
  it('placement: cost-aware by default, first-fit by name, anything else refused', () => {
    expect(parseHeadOptions({ id: 'h' }).placement).toBe('cost-aware');
    expect(parseHeadOptions({ id: 'h', placement: 'first-fit' }).placement).toBe('first-fit');
    expect(() => parseHeadOptions({ id: 'h', placement: 'best-fit' as never })).toThrow(
      /placement='best-fit': use cost-aware or first-fit/,
    );
  });
});

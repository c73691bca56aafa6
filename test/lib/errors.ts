// The error code a promise settles with ('ok' when it resolves): tests compare errnos with it.
export const code = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};

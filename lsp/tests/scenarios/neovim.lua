-- The hotswap-lsp end-to-end scenario for real neovim, headless, 0.7.2 and 0.11.4.
--
-- Run by lsp/tests/language_server/editors.rs as
--   nvim --headless -u NONE -i NONE -n -c 'luafile neovim.lua'
-- with HOTSWAP_TEST_LSP (the hotswap-lsp binary), HOTSWAP_TEST_ROOT (the app, holding
-- hotswap.toml), HOTSWAP_TEST_FILE (its handler source), HOTSWAP_TEST_PORT (its HTTP port),
-- HOTSWAP_TEST_RESULTS (this script writes its steps there, and PASS or FAIL last) and
-- HOTSWAP_TEST_WAIT_MS (how long one step may take). The same scenario runs against the
-- stand-in daemon and against the real one.
--
-- A Lua error does not make neovim exit with an error: every failure ends with `cquit 1`.

local lsp_command = os.getenv('HOTSWAP_TEST_LSP')
local root = os.getenv('HOTSWAP_TEST_ROOT')
local source_file = os.getenv('HOTSWAP_TEST_FILE')
local port = tonumber(os.getenv('HOTSWAP_TEST_PORT'))
local wait_ms = tonumber(os.getenv('HOTSWAP_TEST_WAIT_MS') or '20000')
local results = assert(io.open(os.getenv('HOTSWAP_TEST_RESULTS'), 'w'))
local uv = vim.loop
local is_0_11 = vim.fn.has('nvim-0.11') == 1

local function note(line)
  results:write(line, '\n')
  results:flush()
end

local function fail(step, reason)
  note('FAIL ' .. step .. ': ' .. reason)
  results:close()
  vim.cmd('cquit 1')
end

local function now_ms()
  return uv.hrtime() / 1e6
end

-- Messages the server shows, in order.
local shown = {}
vim.lsp.handlers['window/showMessage'] = function(_, result)
  table.insert(shown, result.message)
  note('showMessage: ' .. result.message)
end

local function shown_containing(text)
  for _, message in ipairs(shown) do
    if message:find(text, 1, true) then
      return message
    end
  end
  return nil
end

-- GET / over a plain TCP connection (luv), returning the whole response or ''.
local function http_get()
  local done, chunks = false, {}
  local tcp = uv.new_tcp()
  tcp:connect('127.0.0.1', port, function(connect_error)
    if connect_error then
      tcp:close()
      done = true
      return
    end
    tcp:write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    tcp:read_start(function(read_error, chunk)
      if chunk and not read_error then
        table.insert(chunks, chunk)
        return
      end
      tcp:close()
      done = true
    end)
  end)
  vim.wait(5000, function()
    return done
  end, 10)
  return table.concat(chunks)
end

-- Waits until the app answers with `text`, letting neovim handle the server's messages between
-- requests.
local function wait_for_answer(step, text)
  local deadline = now_ms() + wait_ms
  local last = ''
  while now_ms() < deadline do
    last = http_get()
    if last:find(text, 1, true) then
      note('ok ' .. step)
      return
    end
    vim.wait(100)
  end
  fail(step, 'the app never answered with "' .. text .. '"; last response: ' .. last)
end

local function wait_until(step, predicate, describe)
  if vim.wait(wait_ms, predicate, 20) then
    note('ok ' .. step)
  else
    fail(step, 'timed out; ' .. describe())
  end
end

-- Start the server the way the docs tell users to.
vim.cmd('filetype on')
local init_options = { messages = 'showMessage' }
local client_id
if is_0_11 then
  vim.lsp.config('hotswap', {
    cmd = { lsp_command },
    filetypes = { 'rust' },
    root_markers = { 'hotswap.toml' },
    workspace_required = true,
    init_options = init_options,
  })
  vim.lsp.enable('hotswap')
end
vim.cmd('edit ' .. vim.fn.fnameescape(source_file))
local buffer = vim.api.nvim_get_current_buf()
if not is_0_11 then
  client_id = vim.lsp.start_client({
    name = 'hotswap',
    cmd = { lsp_command },
    root_dir = root,
    init_options = init_options,
  })
  vim.lsp.buf_attach_client(buffer, client_id)
end

local function client()
  if is_0_11 then
    return vim.lsp.get_clients({ bufnr = buffer, name = 'hotswap' })[1]
  end
  return vim.lsp.get_client_by_id(client_id)
end

wait_until('the server starts and attaches', function()
  local c = client()
  return c ~= nil and c.initialized == true
end, function()
  return 'filetype=' .. vim.bo[buffer].filetype .. ', clients: ' .. vim.inspect(vim.lsp.get_active_clients())
end)

wait_for_answer('the app serves the scaffolded code', 'hello from hotswap')

-- 1. Change the greeting and save: the app answers with the new code.
if vim.fn.search('hello from hotswap') == 0 then
  fail('change the greeting', source_file .. ' has no "hello from hotswap"')
end
vim.cmd('%s/hello from hotswap/hello from neovim/')
vim.cmd('write')
wait_for_answer('after :w the app answers with the new code', 'hello from neovim')

-- 2. Break it and save: the compiler's error appears as a diagnostic, the old code keeps serving.
-- The `"é"` before the error makes UTF-16 columns (the protocol's) differ from byte columns
-- (neovim's), so the column check below proves the conversion.
local broken_line = 'pub fn hotswap_broken() -> u32 { let _ = "é"; "not a number" }'
vim.api.nvim_buf_set_lines(buffer, -1, -1, false, { broken_line })
local broken_line_index = vim.api.nvim_buf_line_count(buffer) - 1
vim.cmd('write')

local function hotswap_diagnostics()
  local found = {}
  for _, diagnostic in ipairs(vim.diagnostic.get(buffer)) do
    if diagnostic.source == 'hotswap' then
      table.insert(found, diagnostic)
    end
  end
  return found
end

wait_until('the build error appears as a diagnostic', function()
  return #hotswap_diagnostics() > 0
end, function()
  return 'diagnostics: ' .. vim.inspect(vim.diagnostic.get(buffer))
end)
local diagnostic = hotswap_diagnostics()[1]
local expected_column = broken_line:find('"not a number"', 1, true) - 1
if diagnostic.severity ~= vim.diagnostic.severity.ERROR
  or diagnostic.lnum ~= broken_line_index
  or diagnostic.col ~= expected_column
  or not diagnostic.message:find('mismatched types', 1, true)
then
  fail('the diagnostic points at the literal', 'expected an error at line ' .. broken_line_index
    .. ', byte column ' .. expected_column .. ' about mismatched types; got ' .. vim.inspect(diagnostic))
end
note('ok the diagnostic points at the literal (line ' .. diagnostic.lnum .. ', column ' .. diagnostic.col .. ')')
wait_until('the failure is shown', function()
  return shown_containing('failed') ~= nil
end, function()
  return 'shown: ' .. vim.inspect(shown)
end)
wait_for_answer('the old code keeps serving while the build is broken', 'hello from neovim')

-- 3. Roll back through the language server: the code before serves again.
local command_done, command_error = false, nil
local function on_command_result(err)
  command_error = err
  command_done = true
end
if is_0_11 then
  client():exec_cmd({ title = 'Roll back', command = 'hotswap.rollback', arguments = {} }, { bufnr = buffer },
    on_command_result)
else
  client().request('workspace/executeCommand', { command = 'hotswap.rollback', arguments = {} },
    on_command_result, buffer)
end
wait_until('hotswap.rollback is answered', function()
  return command_done
end, function()
  return 'no answer'
end)
if command_error ~= nil then
  fail('hotswap.rollback', vim.inspect(command_error))
end
wait_for_answer('after the rollback the code before serves again', 'hello from hotswap')
wait_until('the rollback is shown', function()
  return shown_containing('rolled back') ~= nil
end, function()
  return 'shown: ' .. vim.inspect(shown)
end)

-- 4. Fix it and save: the diagnostic goes away, the new code serves.
vim.api.nvim_buf_set_lines(buffer, broken_line_index, broken_line_index + 1, false, {})
vim.cmd('write')
wait_until('the fixed build clears the diagnostic', function()
  return #hotswap_diagnostics() == 0
end, function()
  return 'diagnostics: ' .. vim.inspect(hotswap_diagnostics())
end)
wait_for_answer('after the fix the new code serves', 'hello from neovim')

note('PASS')
results:close()
vim.cmd('qa!')

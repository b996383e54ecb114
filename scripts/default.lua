-- ksr default routing script (Lua). Same logic as scripts/default.py.
-- Grows with the modules; see docs/ for the full production version.
function ksr_request_route()
  if KSR.is_OPTIONS() then
    KSR.sl.sl_send_reply(200, "Keepalive")
    KSR.x.exit()
  end
  KSR.sl.sl_send_reply(404, "Not Found")
end

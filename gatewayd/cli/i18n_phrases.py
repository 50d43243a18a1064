"""Chinese for text written in English outside the CLI: what a config schema expects, what a
config error says, and click's own messages.

``PHRASES``, ``PROBLEMS`` and ``REFUSALS`` are (pattern, 中文) rows, tried in order, each
matched against the whole text; a group named ``xe…`` is itself translated as an
expected-phrase, ``xp…`` as a problem, ``xr…`` as a refusal; any other group is kept as written
(key names, values, paths). ``CLICK`` maps click's
message ids (the text before ``.format``) to Chinese.
"""

from __future__ import annotations

# What a schema field expects (gatewayd.schema and the plugins' schemas).
PHRASES: list[tuple[str, str]] = [
    (r"an integer (?P<lo>-?\d+)\.\.(?P<hi>-?\d+)", "{lo}..{hi} 之间的整数"),
    (r"a number (?P<lo>\S+)\.\.(?P<hi>\S+)", "{lo}..{hi} 之间的数"),
    (r"true or false", "true 或 false"),
    (r"a string", "字符串"),
    (r"a list of strings", "字符串列表"),
    (r"a file path", "文件路径"),
    (r"one of (?P<c>.+)", "以下之一：{c}"),
    (r"a standard baud rate: (?P<c>.+)", "标准波特率之一：{c}"),
    (
        r"a list of device ids \(or \"\*\" for any\)",
        '设备编号列表（"*" 表示任意设备）',
    ),
    (
        r"an id of letters A-Z a-z, digits 0-9, '_' or '-' \(at most 64\)",
        "由字母 A-Z a-z、数字 0-9、'_'、'-' 组成的编号（最多 64 个字符）",
    ),
    (
        r"a name of letters, digits, '\.', '_' or '-' \(at most 64\)",
        "由字母、数字、'.'、'_'、'-' 组成的名称（最多 64 个字符）",
    ),
    (
        r"topic levels of letters A-Z a-z, digits 0-9, '_' or '-', separated by '/' "
        r"\(none leading, trailing or doubled\)",
        "由字母 A-Z a-z、数字 0-9、'_'、'-' 组成、以 '/' 分隔的主题层级（首尾不能是 '/'，不能连续两个 '/'）",
    ),
    (
        r"mqtt://host\[:port\] or mqtts://host\[:port\], or a list of 1\.\.(?P<n>\d+) of them",
        "mqtt://主机[:端口] 或 mqtts://主机[:端口]，或由 1..{n} 个这样的地址组成的列表",
    ),
    (
        r"mqtt://host\[:port\] or mqtts://host\[:port\], each once",
        "mqtt://主机[:端口] 或 mqtts://主机[:端口]，且不能重复",
    ),
    (
        r"mqtt://host\[:port\] or mqtts://host\[:port\] with a port 1\.\.65535",
        "mqtt://主机[:端口] 或 mqtts://主机[:端口]，端口 1..65535",
    ),
    (r"mqtt://host\[:port\] or mqtts://host\[:port\]", "mqtt://主机[:端口] 或 mqtts://主机[:端口]"),
    (
        r"host:port with a port 0\.\.65535, or empty to disable",
        "主机:端口（端口 0..65535），留空则不开启",
    ),
    (r"a mode-0600 file with (?P<n>\d+) hex digits", "权限为 0600、内容为 {n} 位十六进制数的文件"),
    (r"a mode-0600 file", "权限为 0600 的文件"),
    (r"a driver name", "驱动名称"),
    (r"the name of a \[\[buses\]\] entry", "某个 [[buses]] 的 name"),
    (r"a serial device path", "串口设备路径"),
    (r"a host name or address", "主机名或 IP 地址"),
    (r"an adapter name like hci0", "适配器名称，如 hci0"),
    (r"a Bluetooth address like (?P<a>\S+)", "蓝牙地址，如 {a}"),
    (r"8 hex digits \(the detector id on its label\)", "8 位十六进制数（探测器标签上的编号）"),
    (r"a unique address \((?P<d>\S+) has it too\)", "唯一的地址（{d} 也用了它）"),
]

# What a config error says (gatewayd.config, gatewayd.schema, gatewayd.secrets, drivers).
PROBLEMS: list[tuple[str, str]] = [
    (r"missing; a password_file needs a username", "缺少；有 password_file 时必须有 username"),
    (r"missing; expected (?P<xe>.+)", "缺少；应为{xe}"),
    (
        r"expected the name of a \[\[buses\]\] entry \((?P<k>.*)\)",
        "应为某个 [[buses]] 的 name（现有：{k}）",
    ),
    (r"expected \[\[(?P<k>\w+)\]\] tables", "应为 [[{k}]] 表"),
    (r"expected \[rules\.<name>\] tables", "应为 [rules.<名称>] 表"),
    (r"expected a table", "应为表"),
    (
        r"expected exactly one of port \(RTU\) or host \(TCP\)",
        "port（RTU）和 host（TCP）须且只须给出一个",
    ),
    (r"expected (?P<xe>.+)", "应为{xe}"),
    (r"unknown key \(known keys: (?P<k>.*)\)", "未知的键（可用的键：{k}）"),
    (r"unknown section \(known: (?P<k>.*)\)", "未知的节（可用的节：{k}）"),
    (r"unknown rule \(known: (?P<k>.*)\)", "未知的规则（可用的规则：{k}）"),
    (r"no such file", "文件不存在"),
    (r"cannot read it \((?P<r>.*)\)", "无法读取（{r}）"),
    (r"not valid TOML \((?P<r>.*)\)", "不是有效的 TOML（{r}）"),
    (r"(?P<a>\w+) and (?P<b>\w+) go together", "{a} 和 {b} 必须同时给出"),
    (r"ca_file/cert_file need an mqtts:// url", "ca_file/cert_file 需要 mqtts:// 地址"),
    (
        r"every url needs the same scheme as the first",
        "每个地址须与第一个使用相同的协议（都是 mqtt:// 或都是 mqtts://）",
    ),
    (r"a bus of this name exists already", "已有同名总线"),
    (r"this id is taken already", "此编号已被占用"),
    (
        r"bus (?P<b>'[^']*') \((?P<d>[\w.-]+)\) has no (?P<k>\w+) devices",
        "总线 {b}（{d}）不支持 {k} 设备",
    ),
    (
        r"no device (?P<d>.+) in this config \(devices: (?P<k>.*)\)",
        "配置中没有设备 {d}（现有设备：{k}）",
    ),
    (r"port (?P<p>\d+) is over 65535", "端口 {p} 超过 65535"),
    (
        r"no driver named (?P<n>'[^']*') \(installed: (?P<k>.*)\)",
        "没有名为 {n} 的驱动（已安装：{k}）",
    ),
    # A secret file's own problem (gatewayd.secrets), its path first.
    (
        r"\(a value that looks like a key, not a file path: give the path of a 0600 file\): (?P<xp>.+)",
        "（这像是密钥本身而不是文件路径：请给出权限为 0600 的密钥文件的路径）：{xp}",
    ),
    (r"(?P<p>.+): no such file", "{p}：文件不存在"),
    (r"(?P<p>.+): not a regular file", "{p}：不是普通文件"),
    (r"(?P<p>.+): cannot read it \((?P<r>.*)\)", "{p}：无法读取（{r}）"),
    (
        r"(?P<p>.+): readable by group or others \(mode (?P<m>\d+)\); fix it with: (?P<c>.+)",
        "{p}：同组或其他用户可读（权限 {m}）；修复：{c}",
    ),
    (
        r"(?P<p>.+): expected (?P<n>\d+) hex digits, got (?P<g>\d+)",
        "{p}：应为 {n} 位十六进制数，实际 {g} 位",
    ),
    (r"(?P<p>.+): expected (?P<n>\d+) hex digits", "{p}：应为 {n} 位十六进制数"),
]

# What the daemon answers when it refuses (gatewayd.control, gatewayd.alarms, the rules).
REFUSALS: list[tuple[str, str]] = [
    (r"no active alarm (?P<a>'[^']*')", "没有告警 {a}"),
    (
        r"(?P<a>\S+) is still active \(detector (?P<d>[^)]*)\): reset it once it is over",
        "{a} 仍在告警（探测器 {d}）：解除后再复位",
    ),
    (
        r"(?P<a>\S+) is still active \(port (?P<d>[^)]*)\): reset it once it is over",
        "{a} 仍在告警（端口 {d}）：解除后再复位",
    ),
    (
        r"(?P<a>\S+) is still active(?: \((?P<d>[^)]*)\))?: reset it once it is over",
        "{a} 仍在告警（{d}）：解除后再复位",
    ),
    (
        r"(?P<a>\S+) is not reset by hand: it clears (?P<c>.+)",
        "{a} 不需手动复位：它会自行解除（{c}）",
    ),
    (
        r"fire still reported by (?P<d>.+): reset once every one is clear",
        "{d} 仍在报火警：全部解除后再复位",
    ),
    (r"forbidden: (?P<xr>.+)", "不允许：{xr}"),
    (
        r"fire mode: chargers stay off until the fire is reset",
        "火警模式：火警复位前充电桩保持断电",
    ),
    (
        r"fire mode: escape doors stay open until the fire is reset",
        "火警模式：火警复位前疏散门保持打开",
    ),
    (
        r"fire mode: the door is held open already and stays open until the fire is reset",
        "火警模式：门已保持打开，火警复位前一直打开",
    ),
    (
        r"the house is in fire mode: no drill until it is reset",
        "房屋处于火警模式：复位前不能演练",
    ),
    (r"a fire drill is already running", "已有一次消防演练正在进行"),
    (r"no fire drill: no detector a drill can start from", "无法演练：没有可用于演练的探测器"),
    (r"no fire drill: no fire rule runs", "无法演练：火警规则未运行"),
    (r"no device (?P<d>'[^']*')", "没有设备 {d}"),
    (r"no bus (?P<b>'[^']*')", "没有总线 {b}"),
    (r"bus (?P<b>\S+) is not running \(restarts: (?P<n>\d+)\)", "总线 {b} 未运行（已重启 {n} 次）"),
    (r"permission denied", "权限不足"),
    (r"busy: (?P<n>\d+) clients connected", "忙：已有 {n} 个客户端连接"),
    (r"timeout: (?P<r>.+)", "超时：{r}"),
]

# click's own message ids (click 8.1 .. 8.x), as its modules pass them to gettext.
CLICK: dict[str, str] = {
    "Usage:": "用法：",
    "Options": "选项",
    "Commands": "命令",
    "Positional arguments": "位置参数",
    "Error: {message}": "错误：{message}",
    "Try '{command} {option}' for help.": "帮助：'{command} {option}'",
    "Aborted!": "已取消！",
    "Show this message and exit.": "显示此帮助并退出。",
    "Show the version and exit.": "显示版本并退出。",
    "%(prog)s, version %(version)s": "%(prog)s，版本 %(version)s",
    "Missing command.": "缺少命令。",
    "No such option: {name}": "没有此选项：{name}",
    "No such option {name!r}.": "没有此选项 {name!r}。",
    "No such command {name!r}.": "没有命令 {name!r}。",
    "Did you mean {possibility}?": "您是否要输入 {possibility}？",
    "(Possible options: {possibilities})": "（可能的选项：{possibilities}）",
    "(Did you mean one of: {possibilities}?)": "（您是否要输入以下之一：{possibilities}？）",
    "Takes {nargs} values but 1 was given.": "需要 {nargs} 个值，只给了 1 个。",
    "Takes {nargs} values but {len} were given.": "需要 {nargs} 个值，给了 {len} 个。",
    "Missing argument": "缺少参数",
    "Missing option": "缺少选项",
    "Missing parameter": "缺少参数",
    "Missing {param_type}": "缺少{param_type}",
    "Missing parameter: {param_name}": "缺少参数：{param_name}",
    "Invalid value: {message}": "无效的值：{message}",
    "Invalid value for {param_hint}: {message}": "{param_hint} 的值无效：{message}",
    "Option {name!r} does not take a value.": "选项 {name!r} 不接受值。",
    "Option {name!r} requires an argument.": "选项 {name!r} 需要一个值。",
    "Option {name!r} requires {nargs} arguments.": "选项 {name!r} 需要 {nargs} 个值。",
    "Got unexpected extra argument ({args})": "多余的参数（{args}）",
    "Got unexpected extra arguments ({args})": "多余的参数（{args}）",
    "Argument {name!r} takes {nargs} values.": "参数 {name!r} 需要 {nargs} 个值。",
    "{value!r} is not one of {choices}.": "{value!r} 不是以下之一：{choices}。",
    "{value!r} is not one of {choices}": "{value!r} 不是以下之一：{choices}",
    "{value!r} is not {choice}.": "{value!r} 不是 {choice}。",
    "{value!r} is not {choices}.": "{value!r} 不是 {choices}。",
    "{value!r} is not a valid {number_type}.": "{value!r} 不是有效的{number_type}。",
    "{value} is not in the range {range}.": "{value} 不在范围 {range} 内。",
    "{value!r} is not a valid boolean.": "{value!r} 不是有效的布尔值。",
    "{name} {filename!r} does not exist.": "{name} {filename!r} 不存在。",
    "{name} {filename!r} is a file.": "{name} {filename!r} 是文件。",
    "{name} {filename!r} is a directory.": "{name} {filename!r} 是目录。",
    "{name} {filename!r} is not readable.": "{name} {filename!r} 不可读。",
    "{name} {filename!r} is not writable.": "{name} {filename!r} 不可写。",
    "file": "文件",
    "directory": "目录",
    "path": "路径",
    "integer": "整数",
    "float": "数",
    "Error: invalid input": "错误：输入无效",
    "Error: The two entered values do not match.": "错误：两次输入不一致。",
    "Repeat for confirmation": "请再输入一次确认",
    "default: {default}": "默认：{default}",
    "env var: {var}": "环境变量：{var}",
    "required": "必填",
    "Choose from:\n\t{choices}": "可选：\n\t{choices}",
}


# What the broker check found (gatewayd.cli.probes), for `gatewayd check --all`.
BROKER: list[tuple[str, str]] = [
    (r"login accepted over TLS", "登录成功（TLS）"),
    (r"login accepted", "登录成功"),
    (
        r"cannot resolve (?P<h>\S+): check DNS and the uplink \(4G/Ethernet\)",
        "无法解析 {h}：请检查 DNS 和上行网络（4G/以太网）",
    ),
    (
        r"no answer from (?P<w>\S+) in (?P<s>\d+) s \(connecting, or in the TLS handshake\): "
        r"check the uplink and the firewall",
        "{w} 在 {s} 秒内无应答（连接中或 TLS 握手中）：请检查上行网络和防火墙",
    ),
    (
        r"no answer from (?P<w>\S+) in (?P<s>\d+) s: check the uplink and the firewall",
        "{w} 在 {s} 秒内无应答：请检查上行网络和防火墙",
    ),
    (
        r"TLS: the broker's certificate is not trusted \((?P<m>.*)\); check mqtt\.ca_file",
        "TLS：服务器证书不受信任（{m}）；请检查 mqtt.ca_file",
    ),
    (
        r"TLS files: (?P<e>.*); check mqtt\.ca_file, mqtt\.cert_file and mqtt\.key_file",
        "TLS 文件：{e}；请检查 mqtt.ca_file、mqtt.cert_file 和 mqtt.key_file",
    ),
    (r"TLS handshake with (?P<w>\S+) failed \((?P<e>.*)\)", "与 {w} 的 TLS 握手失败（{e}）"),
    (r"cannot connect to (?P<w>\S+) \((?P<e>.*)\)", "无法连接 {w}（{e}）"),
    (
        r"(?P<w>\S+) closed the connection: is it an MQTT broker\? \(TLS port with mqtt://\?\)",
        "{w} 关闭了连接：它是 MQTT 服务器吗？（TLS 端口却写了 mqtt://？）",
    ),
    (
        r"(?P<w>\S+) speaks TLS but the config says mqtt://: use url = (?P<u>\S+) in \[mqtt\] "
        r"\(and its ca_file\)",
        "{w} 使用 TLS，但配置写的是 mqtt://：请在 [mqtt] 中写 url = {u}（并设置 ca_file）",
    ),
    (r"(?P<w>\S+): no MQTT answer in (?P<s>\d+) s", "{w}：{s} 秒内没有 MQTT 应答"),
    (r"(?P<w>\S+) did not answer like an MQTT broker", "{w} 的应答不像 MQTT 服务器"),
    (r"the broker refused the MQTT protocol version", "服务器拒绝了该 MQTT 协议版本"),
    (r"the broker refused the client id", "服务器拒绝了客户端编号"),
    (r"the broker is unavailable", "服务器暂不可用"),
    (r"bad username or password", "用户名或密码错误"),
    (
        r"not authorized \(check the username and the broker's ACL\)",
        "未授权（请检查用户名和服务器的 ACL）",
    ),
    (r"refused: (?P<n>.+) \(code (?P<c>\d+)\)", "被拒绝：{n}（代码 {c}）"),
]

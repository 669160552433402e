// Simulation top for whole programs: the accelerator, its external memory, a cycle
// counter, an instruction trace and checkpoints (Verilog-2005).
//
// A TESTBENCH wrapper, hand-written: the design is the Amaranth-generated `accelerator`
// (fpga.generate_verilog); this file only surrounds it for simulators/program_run.py,
// which drives `start`/`prog_addr`/`watch_*` and sleeps until `stop` rises, so that
// Python is not woken per clock cycle. Compiles on Verilator and on Icarus (-g2005).
//
// Clock: the input `clk` (cocotb's C-level GPI clock), or, with HWGEN_CLOCK_INTERNAL
// defined, a 10 ns clock generated here (Verilator --timing). Reset: the accelerator's
// synchronous reset is held for the first two clock edges.
//
// Cycles: `cycles` counts clock edges since time 0. A program starts at the edge that
// samples `start` (held high for one edge, with `prog_addr` its byte address).
//
// Trace (plusarg +trace_file=PATH; none without it), one text line per event, decimal:
//     S <edge>            the edge that sampled start
//     I <index> <edge>    instruction <index> completed at <edge> (the accelerator's `pc`
//                         went from <index> to <index> + 1 at that edge)
//     E <index> <edge>    END (instruction <index>) raised `done` at <edge>
// Each line is written one edge after its event; the file is flushed after every E.
//
// Checkpoints: with `watch_en` high, `at_watch` is high once instruction `watch_pc` has
// completed (pc > watch_pc, or END at watch_pc raised done), and while it is high the
// memory accepts no instruction fetch, so the accelerator waits (idle, buffer and memory
// quiet) before the next instruction until `watch_pc`/`watch_en` change.
// `stop` = `at_watch` | `done`: what the runner awaits.
// Waves (Icarus, HWGEN_WAVES_VCD defined): +vcd_file=PATH dumps a VCD of everything.

module hwgen_program_top #(
    parameter DATA_BITS = 256,
    parameter WORDS = 2097152,
    parameter ADDR_BITS = 40
) (
`ifndef HWGEN_CLOCK_INTERNAL
    input                      clk,
`endif
    input                      start,
    input      [ADDR_BITS-1:0] prog_addr,
    input      [31:0]          watch_pc,
    input                      watch_en,
    output                     done,
    output                     error,
    output     [31:0]          pc,
    output                     at_watch,
    output                     stop,
    output reg [63:0]          cycles,
    output                     mem_error,
    output     [3:0]           mem_err_code,
    output     [ADDR_BITS-1:0] mem_err_addr,
    output     [63:0]          mem_err_cycle
);
`ifdef HWGEN_CLOCK_INTERNAL
    reg clk = 1'b0;
    always #5 clk = ~clk;
`endif

    reg [1:0] reset_edges = 2'd0;
    wire rst = reset_edges != 2'd2;
    always @(posedge clk) if (rst) reset_edges <= reset_edges + 2'd1;
    initial cycles = 64'd0;
    always @(posedge clk) cycles <= cycles + 64'd1;

    wire                 ins_req__valid, ins_req__ready, ins_data__valid, ins_data__ready;
    wire [ADDR_BITS+7:0] ins_req__payload;
    wire [127:0]         ins_data__payload;
    wire                 rd_req__valid, rd_req__ready, rd_data__valid, rd_data__ready;
    wire [ADDR_BITS+7:0] rd_req__payload;
    wire [DATA_BITS-1:0] rd_data__payload;
    wire                 wr_req__valid, wr_req__ready, wr_data__valid, wr_data__ready;
    wire [ADDR_BITS+7:0] wr_req__payload;
    wire [DATA_BITS-1:0] wr_data__payload;

    accelerator dut (
        .clk(clk), .rst(rst), .start(start), .prog_addr(prog_addr), .done(done), .error(error), .pc(pc),
        .ins_req__valid(ins_req__valid), .ins_req__ready(ins_req__ready), .ins_req__payload(ins_req__payload),
        .ins_data__valid(ins_data__valid), .ins_data__ready(ins_data__ready), .ins_data__payload(ins_data__payload),
        .rd_req__valid(rd_req__valid), .rd_req__ready(rd_req__ready), .rd_req__payload(rd_req__payload),
        .rd_data__valid(rd_data__valid), .rd_data__ready(rd_data__ready), .rd_data__payload(rd_data__payload),
        .wr_req__valid(wr_req__valid), .wr_req__ready(wr_req__ready), .wr_req__payload(wr_req__payload),
        .wr_data__valid(wr_data__valid), .wr_data__ready(wr_data__ready), .wr_data__payload(wr_data__payload));

    // instructions completed by the running (or last) program
    wire [32:0] completed = {1'b0, pc} + (done ? 33'd1 : 33'd0);
    assign at_watch = watch_en & (completed > {1'b0, watch_pc});
    assign stop = at_watch | done;

    hwgen_ext_mem #(.DATA_BITS(DATA_BITS), .WORDS(WORDS), .ADDR_BITS(ADDR_BITS)) ext_mem (
        .clk(clk), .rst(rst), .now(cycles), .ins_hold(at_watch),
        .ins_req__valid(ins_req__valid), .ins_req__ready(ins_req__ready), .ins_req__payload(ins_req__payload),
        .ins_data__valid(ins_data__valid), .ins_data__ready(ins_data__ready), .ins_data__payload(ins_data__payload),
        .rd_req__valid(rd_req__valid), .rd_req__ready(rd_req__ready), .rd_req__payload(rd_req__payload),
        .rd_data__valid(rd_data__valid), .rd_data__ready(rd_data__ready), .rd_data__payload(rd_data__payload),
        .wr_req__valid(wr_req__valid), .wr_req__ready(wr_req__ready), .wr_req__payload(wr_req__payload),
        .wr_data__valid(wr_data__valid), .wr_data__ready(wr_data__ready), .wr_data__payload(wr_data__payload),
        .error(mem_error), .err_code(mem_err_code), .err_addr(mem_err_addr), .err_cycle(mem_err_cycle));

    // ---------------------------------------------------------------- trace
    integer trace_fd;
    reg [8*1024-1:0] trace_file;
    reg [31:0] pc_q = 32'd0;
    reg        done_q = 1'b0;
    reg        running = 1'b0;
    initial begin
        trace_fd = 0;
        if ($value$plusargs("trace_file=%s", trace_file)) trace_fd = $fopen(trace_file, "w");
    end
`ifdef HWGEN_WAVES_VCD
    reg [8*1024-1:0] vcd_file;
    initial if ($value$plusargs("vcd_file=%s", vcd_file)) begin
        $dumpfile(vcd_file);
        $dumpvars(0, hwgen_program_top);
    end
`endif
    // `pc` and `done` as seen here were set by the previous edge: events are of edge cycles - 1
    always @(posedge clk) begin
        pc_q <= pc;
        done_q <= done;
        if (!rst && start) begin
            running <= 1'b1;
            if (trace_fd != 0) $fwrite(trace_fd, "S %0d\n", cycles);
        end else if (running) begin
            if (pc == pc_q + 32'd1 && trace_fd != 0) $fwrite(trace_fd, "I %0d %0d\n", pc_q, cycles - 64'd1);
            if (done && !done_q) begin
                running <= 1'b0;
                if (trace_fd != 0) begin
                    $fwrite(trace_fd, "E %0d %0d\n", pc, cycles - 64'd1);
                    $fflush(trace_fd);
                end
            end
        end
    end
endmodule

// External memory model of the accelerator, for simulation only (Verilog-2005).
//
// A TESTBENCH model, hand-written: it is not part of the design (the design is the
// Amaranth-generated `accelerator`); simulators/program_run.py builds it beside the
// accelerator in hwgen_program_top.v so that memory traffic never wakes Python.
// It compiles on Verilator and on Icarus (-g2005).
//
// One word array `mem` of WORDS words of DATA_BITS bits (word address = byte address /
// (DATA_BITS / 8)) serves three ports of fpga.hdl.top.Accelerator:
//   * ins_req / ins_data: 128-bit instruction words in the same memory; instruction
//     index = byte address / 16, taken from word (index / (DATA_BITS / 128)), part
//     (index % (DATA_BITS / 128)), part 0 at bit 0 (the little-endian byte image).
//   * rd_req / rd_data: read bursts of `beats` words from a byte address.
//   * wr_req / wr_data: write bursts; each wr_data beat goes to the next word of the
//     oldest write request (no write response channel, as in fpga/hdl/dma.py).
// Requests are {beats[7:0], byte addr[ADDR_BITS-1:0]} (the Amaranth StructLayout,
// first field at bit 0).
//
// Timing (per channel: instructions, read data and write data apart; each runs at once):
//   * a request is accepted whenever its queue (QUEUE entries) has room, also while an
//     earlier burst still streams (pipelined);
//   * read latency L (plusarg +mem_latency=L, default 4, at least 1): a request accepted
//     at clock edge e offers its first beat for acceptance at edge e + L (L = 1: the
//     zero-wait memory of benchmarks/sim_speed.py);
//   * bandwidth: one beat every N edges at most (+mem_beat_interval=N, default 1) on each
//     of the three data streams; write beats need no latency (posted writes).
//   * `ins_hold` high: no instruction request is accepted (the wrapper's checkpoints).
// Contents: zero, then +mem_file=PATH read with $readmemh (`@hex` address lines allowed).
//
// Errors: a request with an address not aligned to its word (16 bytes for instructions,
// DATA_BITS/8 otherwise), a burst reaching past WORDS, or zero beats sets the sticky
// `error`; the first one's kind (err_code: 1 instruction unaligned, 2 instruction out of
// range, 3 read unaligned, 4 read out of range, 5 write unaligned, 6 write out of range,
// 7 zero beats), byte address and clock edge are kept in err_code/err_addr/err_cycle,
// and the first 8 are printed. Out-of-range beats read 0; out-of-range writes are dropped.

/* verilator lint_off BLKSEQ */  // next-state temporaries in the clocked block
module hwgen_ext_mem #(
    parameter DATA_BITS = 256,
    parameter WORDS = 2097152,
    parameter ADDR_BITS = 40,
    parameter QUEUE = 4
) (
    input                      clk,
    input                      rst,
    input      [63:0]          now,                 // index of the coming clock edge
    input                      ins_hold,
    input                      ins_req__valid,
    output                     ins_req__ready,
    input      [ADDR_BITS+7:0] ins_req__payload,
    output                     ins_data__valid,
    input                      ins_data__ready,
    output     [127:0]         ins_data__payload,
    input                      rd_req__valid,
    output                     rd_req__ready,
    input      [ADDR_BITS+7:0] rd_req__payload,
    output                     rd_data__valid,
    input                      rd_data__ready,
    output     [DATA_BITS-1:0] rd_data__payload,
    input                      wr_req__valid,
    output                     wr_req__ready,
    input      [ADDR_BITS+7:0] wr_req__payload,
    input                      wr_data__valid,
    output reg                 wr_data__ready,
    input      [DATA_BITS-1:0] wr_data__payload,
    output reg                 error,
    output reg [3:0]           err_code,
    output reg [ADDR_BITS-1:0] err_addr,
    output reg [63:0]          err_cycle
);
    localparam BYTES = DATA_BITS / 8;                 // bytes per word
    localparam PARTS = DATA_BITS / 128;               // instruction words per memory word
    localparam BYTE_SHIFT = $clog2(BYTES);
    localparam PART_SHIFT = $clog2(PARTS);
    localparam INDEX_BITS = $clog2(WORDS);            // bits of a word index

    reg [DATA_BITS-1:0] mem [0:WORDS-1];

    // ---------------------------------------------------------------- run-time settings
    reg [31:0] latency;
    reg [31:0] interval;
    reg [8*1024-1:0] mem_file;
    integer i;
    initial begin
        error = 1'b0;
        err_code = 4'd0;
        err_addr = {ADDR_BITS{1'b0}};
        err_cycle = 64'd0;
        wr_data__ready = 1'b0;
        if (!$value$plusargs("mem_latency=%d", latency)) latency = 32'd4;
        if (!$value$plusargs("mem_beat_interval=%d", interval)) interval = 32'd1;
        if (latency < 1) latency = 32'd1;
        if (interval < 1) interval = 32'd1;
`ifndef VERILATOR
        for (i = 0; i < WORDS; i = i + 1) mem[i] = {DATA_BITS{1'b0}};  // Verilator zeroes it
`endif
        if ($value$plusargs("mem_file=%s", mem_file)) $readmemh(mem_file, mem);
    end

    // ---------------------------------------------------------------- request checks
    wire [ADDR_BITS-1:0] ins_addr = ins_req__payload[ADDR_BITS-1:0];
    wire [7:0]           ins_beats = ins_req__payload[ADDR_BITS+7:ADDR_BITS];
    wire [ADDR_BITS-1:0] rd_addr = rd_req__payload[ADDR_BITS-1:0];
    wire [7:0]           rd_beats = rd_req__payload[ADDR_BITS+7:ADDR_BITS];
    wire [ADDR_BITS-1:0] wr_addr = wr_req__payload[ADDR_BITS-1:0];
    wire [7:0]           wr_beats = wr_req__payload[ADDR_BITS+7:ADDR_BITS];
    // end of a burst in words / instruction words, one bit wider than an address
    wire [ADDR_BITS:0] ins_end = {1'b0, ins_addr >> 4} + {{(ADDR_BITS - 7){1'b0}}, ins_beats};
    wire [ADDR_BITS:0] rd_end = {1'b0, rd_addr >> BYTE_SHIFT} + {{(ADDR_BITS - 7){1'b0}}, rd_beats};
    wire [ADDR_BITS:0] wr_end = {1'b0, wr_addr >> BYTE_SHIFT} + {{(ADDR_BITS - 7){1'b0}}, wr_beats};

    wire ins_take = ins_req__valid & ins_req__ready;
    wire rd_take = rd_req__valid & rd_req__ready;
    wire wr_take = wr_req__valid & wr_req__ready;
    reg [3:0] errors_printed = 4'd0;

    task flag;
        input [3:0] code;
        input [ADDR_BITS-1:0] addr;
        begin
            if (!error) begin
                err_code <= code;
                err_addr <= addr;
                err_cycle <= now;
            end
            error <= 1'b1;
            if (errors_printed < 4'd8) begin
                errors_printed <= errors_printed + 4'd1;
                $display("hwgen_ext_mem: error %0d (1/2 instruction unaligned/out of range, 3/4 read, 5/6 write, 7 zero beats) at byte address 0x%0h, clock edge %0d",
                         code, addr, now);
            end
        end
    endtask

    always @(posedge clk) begin
        if (ins_take) begin
            if (ins_addr[3:0] != 4'd0) flag(4'd1, ins_addr);
            else if (ins_end > PARTS * WORDS) flag(4'd2, ins_addr);
            if (ins_beats == 8'd0) flag(4'd7, ins_addr);
        end
        if (rd_take) begin
            if (rd_addr % BYTES != 0) flag(4'd3, rd_addr);
            else if (rd_end > WORDS) flag(4'd4, rd_addr);
            if (rd_beats == 8'd0) flag(4'd7, rd_addr);
        end
        if (wr_take) begin
            if (wr_addr % BYTES != 0) flag(4'd5, wr_addr);
            else if (wr_end > WORDS) flag(4'd6, wr_addr);
            if (wr_beats == 8'd0) flag(4'd7, wr_addr);
        end
    end

    // ---------------------------------------------------------------- read channels
    wire [ADDR_BITS-1:0] ins_unit;   // instruction word on offer
    wire [ADDR_BITS-1:0] rd_unit;    // memory word on offer
    wire [ADDR_BITS-1:0] ins_word = ins_unit >> PART_SHIFT;
    wire [DATA_BITS-1:0] ins_mem = ins_word < WORDS ? mem[ins_word[INDEX_BITS-1:0]] : {DATA_BITS{1'b0}};
    wire [DATA_BITS-1:0] ins_part = ins_mem >> (128 * (ins_unit % PARTS));
    assign ins_data__payload = ins_part[127:0];
    assign rd_data__payload = rd_unit < WORDS ? mem[rd_unit[INDEX_BITS-1:0]] : {DATA_BITS{1'b0}};

    hwgen_mem_read_channel #(.AW(ADDR_BITS), .QUEUE(QUEUE)) ins_channel (
        .clk(clk), .rst(rst), .now(now), .latency(latency), .interval(interval), .hold(ins_hold),
        .req_valid(ins_req__valid), .req_ready(ins_req__ready), .req_unit(ins_addr >> 4), .req_beats(ins_beats),
        .data_valid(ins_data__valid), .data_ready(ins_data__ready), .beat_unit(ins_unit));
    hwgen_mem_read_channel #(.AW(ADDR_BITS), .QUEUE(QUEUE)) rd_channel (
        .clk(clk), .rst(rst), .now(now), .latency(latency), .interval(interval), .hold(1'b0),
        .req_valid(rd_req__valid), .req_ready(rd_req__ready), .req_unit(rd_addr >> BYTE_SHIFT),
        .req_beats(rd_beats), .data_valid(rd_data__valid), .data_ready(rd_data__ready), .beat_unit(rd_unit));

    // ---------------------------------------------------------------- write channel
    localparam QB = $clog2(QUEUE);
    reg [ADDR_BITS-1:0] wq_word [0:QUEUE-1];
    reg [7:0]           wq_beats [0:QUEUE-1];
    reg [QB-1:0] wq_head = 0, wq_tail = 0;
    reg [QB:0]   wq_count = 0;
    reg          w_active = 1'b0;
    reg [ADDR_BITS-1:0] w_word;
    reg [7:0]    w_left;
    reg [63:0]   w_due = 64'd0;          // first edge at which the next beat may be taken
    assign wr_req__ready = wq_count != QUEUE;

    reg          w_act_n;
    reg [ADDR_BITS-1:0] w_word_n;
    reg [7:0]    w_left_n;
    reg [63:0]   w_due_n;
    reg [QB:0]   wq_count_n;
    always @(posedge clk) begin
        w_act_n = w_active;
        w_word_n = w_word;
        w_left_n = w_left;
        w_due_n = w_due;
        wq_count_n = wq_count;
        if (rst) begin
            w_act_n = 1'b0;
            wq_count_n = 0;
            wq_head <= 0;
            wq_tail <= 0;
        end else begin
            if (wr_data__valid && wr_data__ready) begin
                if (w_word < WORDS) mem[w_word[INDEX_BITS-1:0]] <= wr_data__payload;
                w_word_n = w_word + 1'b1;
                w_left_n = w_left - 8'd1;
                w_due_n = now + {32'd0, interval};
                if (w_left == 8'd1) w_act_n = 1'b0;
            end
            if (!w_act_n && wq_count != 0) begin   // the oldest queued burst takes data next
                w_act_n = 1'b1;
                w_word_n = wq_word[wq_head];
                w_left_n = wq_beats[wq_head];
                wq_head <= wq_head + 1'b1;
                wq_count_n = wq_count_n - 1'b1;
            end
            if (wr_take && wr_beats != 8'd0) begin
                if (!w_act_n) begin                // nothing queued: takes data next
                    w_act_n = 1'b1;
                    w_word_n = wr_addr >> BYTE_SHIFT;
                    w_left_n = wr_beats;
                end else begin
                    wq_word[wq_tail] <= wr_addr >> BYTE_SHIFT;
                    wq_beats[wq_tail] <= wr_beats;
                    wq_tail <= wq_tail + 1'b1;
                    wq_count_n = wq_count_n + 1'b1;
                end
            end
        end
        w_active <= w_act_n;
        w_word <= w_word_n;
        w_left <= w_left_n;
        w_due <= w_due_n;
        wq_count <= wq_count_n;
        wr_data__ready <= w_act_n && w_due_n <= now + 64'd1;
    end
endmodule

